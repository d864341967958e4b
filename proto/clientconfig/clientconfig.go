// Package clientconfig is rnx's configuration file: a map of named nodes,
// each with an address and the PEM client certificate, key and CA it uses.
package clientconfig

import (
	"errors"
	"fmt"
	"os"
	"sort"

	"go.yaml.in/yaml/v3"

	"github.com/joblet-dev/joblet/proto/atomicfile"
)

// DefaultNode is the node used when none is named.
const DefaultNode = "default"

// Config is an rnx-config.yml file.
type Config struct {
	Version string           `yaml:"version"`
	Nodes   map[string]*Node `yaml:"nodes"`
}

// Node is one Joblet server.
type Node struct {
	Address string `yaml:"address"`
	Cert    string `yaml:"cert"`
	Key     string `yaml:"key"`
	CA      string `yaml:"ca"`
}

// Load reads the file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read client config: %w", err)
	}
	var c Config
	if err := yaml.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("parse client config %s: %w", path, err)
	}
	if len(c.Nodes) == 0 {
		return nil, fmt.Errorf("client config %s: no nodes", path)
	}
	return &c, nil
}

// Node returns the named node, or the default one for "".
func (c *Config) Node(name string) (*Node, error) {
	if name == "" {
		name = DefaultNode
	}
	n, ok := c.Nodes[name]
	if !ok {
		return nil, fmt.Errorf("node %q is not in the config (have: %v)", name, c.Names())
	}
	if n == nil {
		// "nodes: {name: }" in YAML: the name is there with nothing under it.
		return nil, fmt.Errorf("node %q is empty in the config", name)
	}
	var errs []error
	if n.Address == "" {
		errs = append(errs, errors.New("address"))
	}
	if n.Cert == "" || n.Key == "" || n.CA == "" {
		errs = append(errs, errors.New("cert, key and ca"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("node %q is missing %w", name, errors.Join(errs...))
	}
	return n, nil
}

// Names lists the configured nodes, sorted.
func (c *Config) Names() []string {
	names := make([]string, 0, len(c.Nodes))
	for n := range c.Nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Save writes c to path with mode 0600 (it holds a private key).
func Save(c *Config, path string) error {
	b, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode client config: %w", err)
	}
	if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("save client config: %w", err)
	}
	return nil
}

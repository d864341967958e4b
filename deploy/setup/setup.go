// Package setup writes the configuration of a fresh server installation: a
// CA, the gateway's certificate in the daemon config (joblet-config.yml),
// and client configs for an admin and a viewer. The package's postinst runs
// it through joblet-certs.
package setup

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/joblet-dev/joblet/deploy/certs"
	"github.com/joblet-dev/joblet/proto/atomicfile"
	"github.com/joblet-dev/joblet/proto/clientconfig"
	"github.com/joblet-dev/joblet/proto/config"
)

// Files written into the configuration directory.
const (
	DaemonConfig = "joblet-config.yml"     // 0640 root:<gateway group>
	AdminConfig  = "rnx-config.yml"        // 0600 root: the admin's client config
	ViewerConfig = "rnx-config-viewer.yml" // 0600 root: a read-only client config
	CACert       = "ca.pem"                // 0644: the CA, to check the server with
	CAKey        = "ca-key.pem"            // 0600 root: signs further client certificates
)

// Options say what to set up.
type Options struct {
	Dir      string // the configuration directory, e.g. /opt/joblet/config
	Template string // a daemon config to start from; "" or missing: the defaults
	// Address is how clients reach the server (a name or an IP). The server
	// certificate covers it besides Hosts.
	Address string
	Hosts   []string // further names and IPs the server certificate covers
	Port    int      // the gateway's TCP port; 0 means the template's
	UID     int      // the gateway's user and group
	GID     int
	Force   bool // replace an existing configuration
}

// ErrConfigured is returned, without writing anything, when Dir already holds
// a daemon config with TLS material and Force is not set: an upgrade keeps
// the existing certificates.
var ErrConfigured = errors.New("already configured")

// Run writes the configuration and returns the paths it wrote.
func Run(o Options) ([]string, error) {
	daemonPath := filepath.Join(o.Dir, DaemonConfig)
	if !o.Force {
		if c, err := config.Load(daemonPath); err == nil && c.Security.ServerCert != "" {
			return nil, fmt.Errorf("%s: %w", daemonPath, ErrConfigured)
		}
	}
	if o.Address == "" {
		return nil, errors.New("no server address")
	}
	cfg := config.Default()
	if o.Template != "" {
		c, err := config.Load(o.Template)
		switch {
		case err == nil:
			cfg = c
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("template: %w", err)
		}
	}
	if o.Port != 0 {
		cfg.Server.Port = o.Port
	}
	cfg.Gateway = config.Gateway{UID: o.UID, GID: o.GID}

	ca, err := certs.NewCA("joblet-ca")
	if err != nil {
		return nil, err
	}
	server, err := ca.Server(dedup(append([]string{o.Address}, o.Hosts...))...)
	if err != nil {
		return nil, err
	}
	cfg.Security = config.Security{
		ServerCert: string(server.CertPEM),
		ServerKey:  string(server.KeyPEM),
		CACert:     string(ca.CertPEM),
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("config directory: %w", err)
	}

	addr := net.JoinHostPort(o.Address, strconv.Itoa(cfg.Server.Port))
	var wrote []string
	write := func(name string, f func(path string) error) error {
		path := filepath.Join(o.Dir, name)
		if err := f(path); err != nil {
			return err
		}
		wrote = append(wrote, path)
		return nil
	}
	steps := []struct {
		name string
		f    func(string) error
	}{
		{CAKey, func(p string) error { return writeFile(p, ca.KeyPEM, 0o600) }},
		{CACert, func(p string) error { return writeFile(p, ca.CertPEM, 0o644) }},
		{DaemonConfig, func(p string) error { return config.Save(cfg, p, 0o640, o.GID) }},
		{AdminConfig, func(p string) error { return clientFile(ca, p, addr, "admin", certs.RoleAdmin) }},
		{ViewerConfig, func(p string) error { return clientFile(ca, p, addr, "viewer", certs.RoleViewer) }},
	}
	for _, s := range steps {
		if err := write(s.name, s.f); err != nil {
			return wrote, err
		}
	}
	return wrote, nil
}

// Client returns a client config for a new certificate with commonName and
// role, signed by the CA kept in dir, for the server at address (host:port).
func Client(dir, address, commonName, role string) (*clientconfig.Config, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACert))
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKey))
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	ca, err := certs.LoadCA(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return clientConfig(ca, address, commonName, role)
}

func clientConfig(ca *certs.CA, address, commonName, role string) (*clientconfig.Config, error) {
	if role != certs.RoleAdmin && role != certs.RoleViewer {
		return nil, fmt.Errorf("role %q: want %s or %s", role, certs.RoleAdmin, certs.RoleViewer)
	}
	p, err := ca.Client(commonName, role)
	if err != nil {
		return nil, err
	}
	return &clientconfig.Config{Version: "1", Nodes: map[string]*clientconfig.Node{
		clientconfig.DefaultNode: {Address: address, Cert: string(p.CertPEM), Key: string(p.KeyPEM), CA: string(ca.CertPEM)},
	}}, nil
}

func clientFile(ca *certs.CA, path, address, commonName, role string) error {
	c, err := clientConfig(ca, address, commonName, role)
	if err != nil {
		return err
	}
	return clientconfig.Save(c, path)
}

// writeFile writes b to path with mode, replacing the file atomically.
func writeFile(path string, b []byte, mode os.FileMode) error {
	if err := atomicfile.WriteFile(path, b, mode); err != nil {
		return fmt.Errorf("install %s: %w", path, err)
	}
	return nil
}

func dedup(hosts []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, h := range hosts {
		if h != "" && !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}

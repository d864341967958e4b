// Package config is the daemon configuration shared by every Joblet service:
// one YAML file (joblet-config.yml), each service reading the parts it needs.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the daemon configuration file.
type Config struct {
	Version  string   `yaml:"version"`
	Server   Server   `yaml:"server"`
	Paths    Paths    `yaml:"paths"`
	Gateway  Gateway  `yaml:"gateway"`
	Security Security `yaml:"security"`
	Joblet   Joblet   `yaml:"joblet"`
	Logd     Logd     `yaml:"logd"`
	Uploads  Uploads  `yaml:"uploads"`
	Network  Network  `yaml:"network"`
}

// Network holds netd's settings.
type Network struct {
	// CleanupOnExit makes netd remove its bridges, veth pairs, namespace
	// pins and iptables rules when it stops cleanly (embedded dev mode).
	// Off in production, where networks outlive netd; either way the saved
	// networks are restored at the next start.
	CleanupOnExit bool `yaml:"cleanupOnExit"`
}

// Server is where the gateway listens.
type Server struct {
	Address string `yaml:"address"`
	Port    int    `yaml:"port"`
}

// Paths are the directories the suite uses.
type Paths struct {
	RunDir   string `yaml:"runDir"`   // helper sockets: <runDir>/<service>.sock
	StateDir string `yaml:"stateDir"` // persisted state: <stateDir>/<service>/...
}

// Gateway is the unprivileged identity the gateway runs as; helpers accept
// connections from this uid besides root.
type Gateway struct {
	UID int `yaml:"uid"`
	GID int `yaml:"gid"`
}

// Security holds the gateway's TLS material as PEM text.
type Security struct {
	ServerCert string `yaml:"serverCert"`
	ServerKey  string `yaml:"serverKey"`
	CACert     string `yaml:"caCert"`
	// RevocationFile, when set, is an absolute path to the revoked client
	// certificates: serial numbers in hex, one a line, and/or PEM
	// "X509 CRL" blocks signed by the CA. The gateway re-reads it when it
	// changes, without a restart.
	RevocationFile string `yaml:"revocationFile,omitempty"`
}

// Joblet holds job defaults and policies. For the limit defaults zero means
// "no limit" (pids: 1024); for the maxima zero means "what the host has".
type Joblet struct {
	StopGracePeriod   time.Duration `yaml:"stopGracePeriod"`
	MaxConcurrentJobs int           `yaml:"maxConcurrentJobs"`
	DefaultCPULimit   int           `yaml:"defaultCpuLimit"`    // percent of one CPU
	DefaultMemoryMB   int           `yaml:"defaultMemoryLimit"` // MB
	DefaultIOBps      int64         `yaml:"defaultIoLimit"`     // bytes/s, read and write each
	DefaultPids       int           `yaml:"defaultPidsLimit"`
	MaxCPULimit       int           `yaml:"maxCpuLimit"`    // the most --max-cpu may ask, percent
	MaxMemoryMB       int           `yaml:"maxMemoryLimit"` // the most --max-memory may ask, MB
	MaxPids           int           `yaml:"maxPidsLimit"`   // the most --max-pids may ask
	// StopJobsOnExit makes the isolator stop every running job when it
	// stops cleanly (embedded dev mode: a Ctrl-C leaves nothing running).
	// Off in production, where jobs keep running under their shims across
	// a restart of the isolator and the next one adopts them.
	StopJobsOnExit bool `yaml:"stopJobsOnExit"`
	// Workspace caps what a job may write to its /work, Tmp its /tmp. Both
	// are kept in memory (tmpfs) and count against the job's memory limit.
	// A zero field means the default.
	Workspace Storage `yaml:"workspace"`
	Tmp       Storage `yaml:"tmp"`
}

// Storage caps a job's writable directory.
type Storage struct {
	MaxBytes  int64 `yaml:"maxBytes"`
	MaxInodes int64 `yaml:"maxInodes"`
}

// Logd holds output-keeping policies.
type Logd struct {
	MaxLogBytes int64 `yaml:"maxLogBytes"` // per job; 0 means the default
}

// Uploads bounds the files a job may be given for its /work. Zero means
// the default.
type Uploads struct {
	MaxFileBytes  int64 `yaml:"maxFileBytes"`  // per file; default 50 MiB
	MaxTotalBytes int64 `yaml:"maxTotalBytes"` // per job; default 100 MiB
}

// Default returns the production defaults.
func Default() Config {
	return Config{
		Version: "1",
		Server:  Server{Address: "0.0.0.0", Port: 50051},
		Paths:   Paths{RunDir: "/run/joblet", StateDir: "/var/lib/joblet"},
		Joblet: Joblet{
			StopGracePeriod:   10 * time.Second,
			MaxConcurrentJobs: 100,
			DefaultPids:       1024,
			Workspace:         Storage{MaxBytes: 1 << 30, MaxInodes: 65536},
			Tmp:               Storage{MaxBytes: 256 << 20, MaxInodes: 16384},
		},
		Logd:    Logd{MaxLogBytes: 1 << 30},
		Uploads: Uploads{MaxFileBytes: 50 << 20, MaxTotalBytes: 100 << 20},
	}
}

// Load reads the configuration at path over the defaults.
func Load(path string) (Config, error) {
	c := Default()
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("parse config %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Validate checks the values a service relies on.
func (c Config) Validate() error {
	var errs []error
	if !filepath.IsAbs(c.Paths.RunDir) {
		errs = append(errs, fmt.Errorf("paths.runDir %q must be absolute", c.Paths.RunDir))
	}
	if !filepath.IsAbs(c.Paths.StateDir) {
		errs = append(errs, fmt.Errorf("paths.stateDir %q must be absolute", c.Paths.StateDir))
	}
	if c.Security.RevocationFile != "" && !filepath.IsAbs(c.Security.RevocationFile) {
		errs = append(errs, fmt.Errorf("security.revocationFile %q must be absolute", c.Security.RevocationFile))
	}
	if c.Server.Port < 0 || c.Server.Port > 65535 {
		errs = append(errs, fmt.Errorf("server.port %d out of range", c.Server.Port))
	}
	if c.Joblet.StopGracePeriod < 0 {
		errs = append(errs, fmt.Errorf("joblet.stopGracePeriod %v is negative", c.Joblet.StopGracePeriod))
	}
	for name, s := range map[string]Storage{"joblet.workspace": c.Joblet.Workspace, "joblet.tmp": c.Joblet.Tmp} {
		if s.MaxBytes < 0 || s.MaxInodes < 0 {
			errs = append(errs, fmt.Errorf("%s: limits must not be negative", name))
		}
	}
	if c.Uploads.MaxFileBytes < 0 || c.Uploads.MaxTotalBytes < 0 {
		errs = append(errs, errors.New("uploads: byte limits must not be negative"))
	}
	return errors.Join(errs...)
}

// Save writes c to path atomically with the given mode and group.
func Save(c Config, path string, mode os.FileMode, gid int) error {
	b, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err := os.Chown(tmp, 0, gid); err != nil {
		return fmt.Errorf("chown config: %w", err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fmt.Errorf("chmod config: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("install config: %w", err)
	}
	return nil
}

// SocketPath is where service name listens.
func (c Config) SocketPath(name string) string {
	return filepath.Join(c.Paths.RunDir, name+".sock")
}

// StateDir is service name's own state directory.
func (c Config) StateDir(name string) string {
	return filepath.Join(c.Paths.StateDir, name)
}

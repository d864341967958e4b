// Package config is the daemon configuration shared by every Joblet service:
// one YAML file (joblet-config.yml), each service reading the parts it needs.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/joblet-dev/joblet/proto/atomicfile"
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
	GRPC     GRPC     `yaml:"grpc"`
}

// GRPC holds the gateway's limits on its clients, which keep floods and
// idle or slow clients from taking it down. A zero field means the default.
type GRPC struct {
	MaxRecvMsgBytes      int `yaml:"maxRecvMsgBytes"`      // largest message a client may send
	MaxConcurrentStreams int `yaml:"maxConcurrentStreams"` // calls in flight per connection
	MaxConnections       int `yaml:"maxConnections"`       // more wait to be accepted
	// A connection that has not finished its TLS and HTTP/2 handshakes in
	// this time is closed.
	HandshakeTimeout time.Duration `yaml:"handshakeTimeout"`
	// A client that pings more often than this is disconnected
	// (keepalive enforcement).
	MinPingInterval time.Duration `yaml:"minPingInterval"`
	// A connection with no call for this long is closed.
	MaxConnectionIdle time.Duration `yaml:"maxConnectionIdle"`
	// The gateway pings a quiet connection this often and drops it when the
	// ping is not answered within PingTimeout.
	PingInterval time.Duration `yaml:"pingInterval"`
	PingTimeout  time.Duration `yaml:"pingTimeout"`
}

// Bounds of the GRPC fields, so a typo cannot switch a limit off.
const (
	MaxGRPCMsgBytes = 256 << 20
	MaxGRPCStreams  = 1 << 16
	MaxGRPCConns    = 1 << 20
)

// DefaultGRPC returns the gateway's default limits.
func DefaultGRPC() GRPC {
	return GRPC{
		MaxRecvMsgBytes:      4 << 20,
		MaxConcurrentStreams: 256,
		MaxConnections:       512,
		HandshakeTimeout:     10 * time.Second,
		MinPingInterval:      10 * time.Second,
		MaxConnectionIdle:    15 * time.Minute,
		PingInterval:         2 * time.Minute,
		PingTimeout:          20 * time.Second,
	}
}

// WithDefaults returns g with every zero field set to its default.
func (g GRPC) WithDefaults() GRPC {
	d := DefaultGRPC()
	pick := func(v, def int) int {
		if v == 0 {
			return def
		}
		return v
	}
	pickD := func(v, def time.Duration) time.Duration {
		if v == 0 {
			return def
		}
		return v
	}
	return GRPC{
		MaxRecvMsgBytes:      pick(g.MaxRecvMsgBytes, d.MaxRecvMsgBytes),
		MaxConcurrentStreams: pick(g.MaxConcurrentStreams, d.MaxConcurrentStreams),
		MaxConnections:       pick(g.MaxConnections, d.MaxConnections),
		HandshakeTimeout:     pickD(g.HandshakeTimeout, d.HandshakeTimeout),
		MinPingInterval:      pickD(g.MinPingInterval, d.MinPingInterval),
		MaxConnectionIdle:    pickD(g.MaxConnectionIdle, d.MaxConnectionIdle),
		PingInterval:         pickD(g.PingInterval, d.PingInterval),
		PingTimeout:          pickD(g.PingTimeout, d.PingTimeout),
	}
}

// Validate checks the limits: none negative, none beyond its bound.
func (g GRPC) Validate() error {
	var errs []error
	for _, f := range []struct {
		name   string
		v, max int
	}{
		{"grpc.maxRecvMsgBytes", g.MaxRecvMsgBytes, MaxGRPCMsgBytes},
		{"grpc.maxConcurrentStreams", g.MaxConcurrentStreams, MaxGRPCStreams},
		{"grpc.maxConnections", g.MaxConnections, MaxGRPCConns},
	} {
		if f.v < 0 || f.v > f.max {
			errs = append(errs, fmt.Errorf("%s %d: want 1 to %d (0: the default)", f.name, f.v, f.max))
		}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"grpc.handshakeTimeout", g.HandshakeTimeout},
		{"grpc.minPingInterval", g.MinPingInterval},
		{"grpc.maxConnectionIdle", g.MaxConnectionIdle},
		{"grpc.pingInterval", g.PingInterval},
		{"grpc.pingTimeout", g.PingTimeout},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", f.name, f.v))
		}
	}
	return errors.Join(errs...)
}

// Network holds netd's settings.
type Network struct {
	// CleanupOnExit makes netd remove its bridges, veth pairs, namespace
	// pins and iptables rules when it stops cleanly (embedded dev mode).
	// Off in production, where networks outlive netd; either way the saved
	// networks are restored at the next start.
	CleanupOnExit bool `yaml:"cleanupOnExit"`
	// CheckInterval is how often netd checks that its iptables rules,
	// bridges and jobs' veth pairs are still there, and restores what
	// someone else removed (2s when zero; negative: never).
	CheckInterval time.Duration `yaml:"checkInterval"`
	// ReadyNamespaces is how many network namespaces each network keeps
	// made ahead for its next jobs (its veth on the bridge, an address,
	// routes), so that a job's start only takes one: 2 by default; 0:
	// none, each job's is made when it starts.
	ReadyNamespaces int `yaml:"readyNamespaces"`
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
	// CgroupDriver is how job cgroups are made: "systemd" (a transient
	// scope per job, over D-Bus; needs systemd and cgroup v2), "cgroupfs"
	// (nested under the isolator's own cgroup) or "auto"/empty: systemd
	// when the isolator runs as a systemd service on cgroup v2.
	CgroupDriver string `yaml:"cgroupDriver,omitempty"`
	// CgroupSlice is the slice of the jobs' scopes with the systemd
	// driver; empty: joblet.slice.
	CgroupSlice string `yaml:"cgroupSlice,omitempty"`
	// Workspace caps what a job may write to its /work, Tmp its /tmp. Both
	// are kept in memory (tmpfs) and count against the job's memory limit.
	// A zero field means the default.
	Workspace Storage `yaml:"workspace"`
	Tmp       Storage `yaml:"tmp"`
	// UserNamespace maps each job's uids and gids 0..size-1 to an
	// unprivileged host range, so that a job's root is never the host's.
	UserNamespace UserNamespace `yaml:"userNamespace"`
}

// UserNamespace is the host range a job's root and users map to. Every
// job uses the same range (jobs are kept apart by their other namespaces).
// The isolator refuses to start if the range overlaps a user or group of
// the host or an /etc/subuid or /etc/subgid range, or if the kernel cannot
// run jobs in it. Disabled, a job's root is the host's uid 0 with reduced
// capabilities.
type UserNamespace struct {
	Enabled bool   `yaml:"enabled"`
	HostUID uint32 `yaml:"hostUID"` // the host uid of a job's root
	HostGID uint32 `yaml:"hostGID"` // the host gid of a job's root group
	Size    uint32 `yaml:"size"`    // how many ids are mapped
}

// DefaultUserNamespaceBase is the default host uid and gid of a job's root:
// 0x70000000, past systemd's container range (524288-1879048191) and the
// /etc/subuid blocks tools hand out from 100000, and below 2^31, which
// some tools mishandle.
const DefaultUserNamespaceBase = 1879048192

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
			UserNamespace: UserNamespace{
				Enabled: true, HostUID: DefaultUserNamespaceBase, HostGID: DefaultUserNamespaceBase, Size: 65536,
			},
		},
		Network: Network{ReadyNamespaces: 2},
		Logd:    Logd{MaxLogBytes: 1 << 30},
		Uploads: Uploads{MaxFileBytes: 50 << 20, MaxTotalBytes: 100 << 20},
		GRPC:    DefaultGRPC(),
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
	switch c.Joblet.CgroupDriver {
	case "", "auto", "cgroupfs", "systemd":
	default:
		errs = append(errs, fmt.Errorf("joblet.cgroupDriver %q: want auto, cgroupfs or systemd", c.Joblet.CgroupDriver))
	}
	if s := c.Joblet.CgroupSlice; s != "" && (!strings.HasSuffix(s, ".slice") || strings.Contains(s, "/")) {
		errs = append(errs, fmt.Errorf("joblet.cgroupSlice %q: want a slice unit name such as joblet.slice", s))
	}
	for name, s := range map[string]Storage{"joblet.workspace": c.Joblet.Workspace, "joblet.tmp": c.Joblet.Tmp} {
		if s.MaxBytes < 0 || s.MaxInodes < 0 {
			errs = append(errs, fmt.Errorf("%s: limits must not be negative", name))
		}
	}
	if u := c.Joblet.UserNamespace; u.Enabled {
		switch {
		case u.Size == 0:
			errs = append(errs, errors.New("joblet.userNamespace.size must be at least 1"))
		case u.HostUID == 0 || u.HostGID == 0:
			errs = append(errs, errors.New("joblet.userNamespace: hostUID and hostGID must not be 0 (the host's root)"))
		case uint64(u.HostUID)+uint64(u.Size) > 1<<32-1 || uint64(u.HostGID)+uint64(u.Size) > 1<<32-1:
			errs = append(errs, errors.New("joblet.userNamespace: the range passes 4294967294"))
		}
	}
	if n := c.Network.ReadyNamespaces; n < 0 || n > 64 {
		errs = append(errs, fmt.Errorf("network.readyNamespaces %d: want 0 to 64", n))
	}
	if c.Uploads.MaxFileBytes < 0 || c.Uploads.MaxTotalBytes < 0 {
		errs = append(errs, errors.New("uploads: byte limits must not be negative"))
	}
	if err := c.GRPC.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Save writes c to path atomically with the given mode and group.
func Save(c Config, path string, mode os.FileMode, gid int) error {
	b, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	if err := atomicfile.WriteFileOwned(path, b, mode, 0, gid); err != nil {
		return fmt.Errorf("save config: %w", err)
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

package app

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/proto/clientconfig"
	"github.com/joblet-dev/joblet/proto/config"
	"github.com/joblet-dev/joblet/proto/logging"
	"github.com/joblet-dev/joblet/supervisor/devcerts"
	"github.com/joblet-dev/joblet/supervisor/devenv"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func requiresRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: writes files owned by root and another group")
	}
}

func TestSettings(t *testing.T) {
	s, err := settingsFrom(env(nil))
	if err != nil || s.Port != 50051 || s.Grace != 10*time.Second {
		t.Fatalf("defaults = %+v, %v; want port 50051, grace 10s", s, err)
	}
	s, err = settingsFrom(env(map[string]string{EnvPort: "6000", EnvStopGrace: "1500ms"}))
	if err != nil || s.Port != 6000 || s.Grace != 1500*time.Millisecond {
		t.Fatalf("overrides = %+v, %v", s, err)
	}
	s, err = settingsFrom(env(map[string]string{logging.EnvLevel: "Warn"}))
	if err != nil || s.LogLevel != "Warn" {
		t.Fatalf("log level = %+v, %v; want Warn passed on", s, err)
	}
	for _, bad := range []map[string]string{
		{EnvPort: "0"}, {EnvPort: "70000"}, {EnvPort: "http"},
		{EnvStopGrace: "-1s"}, {EnvStopGrace: "10"}, {logging.EnvLevel: "verbose"},
	} {
		if _, err := settingsFrom(env(bad)); err == nil {
			t.Errorf("%v: want an error", bad)
		}
	}
}

func bundle(t *testing.T) devcerts.Bundle {
	t.Helper()
	b, err := devcerts.Ensure(t.TempDir(), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDaemonConfig(t *testing.T) {
	b := bundle(t)
	l := devenv.Layout{Dir: "/dev-dir"}
	c := daemonConfig(l, "/run/joblet-dev/abc/run", devenv.Identity{UID: 998, GID: 997}, 6001, 3*time.Second, b)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Server != (config.Server{Address: "127.0.0.1", Port: 6001}) {
		t.Errorf("server = %+v", c.Server)
	}
	if c.Paths != (config.Paths{RunDir: "/run/joblet-dev/abc/run", StateDir: "/dev-dir/state"}) {
		t.Errorf("paths = %+v", c.Paths)
	}
	if c.Gateway != (config.Gateway{UID: 998, GID: 997}) {
		t.Errorf("gateway = %+v", c.Gateway)
	}
	if c.Security.ServerKey != string(b.Server.KeyPEM) || c.Security.CACert != string(b.CA.CertPEM) || c.Security.ServerCert != string(b.Server.CertPEM) {
		t.Error("security PEMs are not the bundle's")
	}
	if c.Joblet.StopGracePeriod != 3*time.Second {
		t.Errorf("grace = %v", c.Joblet.StopGracePeriod)
	}
	if !c.Network.CleanupOnExit {
		t.Error("network.cleanupOnExit is off: a dev suite would leave bridges and rules behind")
	}
	if !c.Joblet.StopJobsOnExit {
		t.Error("joblet.stopJobsOnExit is off: a dev suite's Ctrl-C would leave jobs running")
	}
}

func TestDaemonConfigFileMode(t *testing.T) {
	requiresRoot(t)
	path := filepath.Join(t.TempDir(), "joblet-config.yml")
	c := daemonConfig(devenv.Layout{Dir: "/d"}, "/d/run", devenv.Identity{UID: 4242, GID: 4243}, 6001, time.Second, bundle(t))
	if err := config.Save(c, path, 0o640, 4243); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode())
	}
	back, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Gateway.GID != 4243 || back.Server.Port != 6001 || back.Joblet.StopGracePeriod != time.Second {
		t.Errorf("round trip lost values: %+v", back)
	}
}

func TestClientConfigRewrittenOnlyOnChange(t *testing.T) {
	b := bundle(t)
	path := filepath.Join(t.TempDir(), "rnx-admin.yml")
	want := clientConfig("127.0.0.1:50051", b.Admin.CertPEM, b.Admin.KeyPEM, b.CA.CertPEM)
	steps := []struct {
		name      string
		cfg       *clientconfig.Config
		wantWrite bool
	}{
		{"first start", want, true},
		{"same again", want, false},
		{"port changed", clientConfig("127.0.0.1:6000", b.Admin.CertPEM, b.Admin.KeyPEM, b.CA.CertPEM), true},
		{"certificate renewed", clientConfig("127.0.0.1:6000", b.Viewer.CertPEM, b.Viewer.KeyPEM, b.CA.CertPEM), true},
	}
	for _, s := range steps {
		wrote, err := ensureClientConfig(path, s.cfg)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if wrote != s.wantWrite {
			t.Fatalf("%s: wrote = %v, want %v", s.name, wrote, s.wantWrite)
		}
		got, err := clientconfig.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		n, err := got.Node("")
		if err != nil {
			t.Fatal(err)
		}
		if *n != *s.cfg.Nodes["default"] {
			t.Fatalf("%s: file holds %+v", s.name, n)
		}
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("client config mode %v, want 0600 (it holds a key)", fi.Mode())
	}
	if err := os.WriteFile(path, []byte("nodes: ["), 0o600); err != nil {
		t.Fatal(err)
	}
	if wrote, err := ensureClientConfig(path, want); err != nil || !wrote {
		t.Fatalf("unparseable file: wrote=%v err=%v, want rewritten", wrote, err)
	}
}

// openTree returns a temp dir whose per-test parent (0700 from t.TempDir) is
// opened to others, so only the modes a test sets decide reachability.
func openTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestPlace(t *testing.T) {
	root := openTree(t)
	gw := devenv.Identity{UID: 4242, GID: 4242}
	dev := filepath.Join(root, "repo", ".dev")
	bin := filepath.Join(root, "repo", "bin", "joblet-gateway")
	if err := os.MkdirAll(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	l := devenv.Layout{Dir: dev}
	p, err := place(l, gw, bin, "/run/joblet-dev")
	if err != nil {
		t.Fatal(err)
	}
	if p.Fallback != "" {
		t.Skipf("temp tree not reachable by others here (%s); cannot test", p.Reason)
	}
	if p.RunDir != l.RunDir() || p.GatewayConfig != l.ConfigPath() || p.GatewayBin != bin {
		t.Fatalf("reachable tree: %+v, want everything in place", p)
	}

	// A clone under a private home: everything moves out.
	if err := os.Chmod(filepath.Join(root, "repo"), 0o700); err != nil {
		t.Fatal(err)
	}
	p, err = place(l, gw, bin, "/run/joblet-dev")
	if err != nil {
		t.Fatal(err)
	}
	fb := filepath.Join("/run/joblet-dev", shortHash(dev))
	want := placement{
		RunDir: fb + "/run", GatewayConfig: fb + "/joblet-config.yml", GatewayBin: fb + "/joblet-gateway", Fallback: fb,
	}
	if p.Reason == "" || !strings.Contains(p.Reason, filepath.Join(root, "repo")) {
		t.Errorf("reason %q does not name the blocking directory", p.Reason)
	}
	p.Reason = ""
	if p != want {
		t.Fatalf("private tree: %+v, want %+v", p, want)
	}

	// Reachable dev dir, but a binary the gateway may not execute.
	if err := os.Chmod(filepath.Join(root, "repo"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bin, 0o700); err != nil {
		t.Fatal(err)
	}
	if p, err = place(l, gw, bin, "/run/joblet-dev"); err != nil || p.GatewayBin != fb+"/joblet-gateway" {
		t.Fatalf("private binary: %+v, %v; want it copied to the fallback dir", p, err)
	}
}

func TestShortHash(t *testing.T) {
	a, b := shortHash("/a/.dev"), shortHash("/b/.dev")
	if a == b || len(a) != 12 || a != shortHash("/a/.dev") {
		t.Fatalf("shortHash: %q %q", a, b)
	}
}

func TestInstallBinary(t *testing.T) {
	requiresRoot(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "dst")
	if err := installBinary(src, dst, 4243); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dst)
	if err != nil || string(b) != "binary" {
		t.Fatalf("copy = %q, %v", b, err)
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o750 {
		t.Fatalf("mode %v, want 0750", fi.Mode())
	}
}

func TestPidFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pids.json")
	f := newPidFile(path)
	for _, s := range []struct {
		name string
		pid  int
	}{{"logd", 10}, {"isolator", 11}, {"logd", 12}} {
		if err := f.set(s.name, s.pid); err != nil {
			t.Fatal(err)
		}
	}
	var got map[string]int
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["logd"] != 12 || got["isolator"] != 11 {
		t.Fatalf("pids = %v, want logd 12 (restarted), isolator 11", got)
	}
	if err := f.remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("pids file still there after remove: %v", err)
	}
}

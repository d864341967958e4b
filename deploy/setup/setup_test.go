package setup

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/joblet-dev/joblet/deploy/certs"
	"github.com/joblet-dev/joblet/proto/clientconfig"
	"github.com/joblet-dev/joblet/proto/config"
)

// requiresRoot skips tests that write root-owned files (config.Save chowns
// the daemon config to root).
func requiresRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the daemon config is written root-owned")
	}
}

func TestRunWritesAWorkingInstallation(t *testing.T) {
	requiresRoot(t)
	dir := t.TempDir()
	wrote, err := Run(Options{Dir: dir, Address: "joblet.example", Hosts: []string{"10.1.2.3", "joblet.example"},
		Port: 50051, UID: 998, GID: 997})
	if err != nil {
		t.Fatal(err)
	}
	if len(wrote) != 5 {
		t.Errorf("wrote %v, want 5 files", wrote)
	}
	modes := map[string]os.FileMode{DaemonConfig: 0o640, AdminConfig: 0o600, ViewerConfig: 0o600, CAKey: 0o600, CACert: 0o644}
	for name, want := range modes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}

	cfg, err := config.Load(filepath.Join(dir, DaemonConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Gateway.UID != 998 || cfg.Gateway.GID != 997 || cfg.Server.Port != 50051 {
		t.Errorf("gateway %+v port %d", cfg.Gateway, cfg.Server.Port)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(cfg.Security.CACert))
	server, err := certs.ParseCert([]byte(cfg.Security.ServerCert))
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"joblet.example", "10.1.2.3"} {
		if _, err := server.Verify(x509.VerifyOptions{DNSName: host, Roots: pool}); err != nil {
			t.Errorf("server certificate for %s: %v", host, err)
		}
	}

	for file, role := range map[string]string{AdminConfig: certs.RoleAdmin, ViewerConfig: certs.RoleViewer} {
		c, err := clientconfig.Load(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		n, err := c.Node("")
		if err != nil {
			t.Fatal(err)
		}
		if n.Address != "joblet.example:50051" {
			t.Errorf("%s address %q", file, n.Address)
		}
		cert, err := certs.ParseCert([]byte(n.Cert))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s client certificate: %v", file, err)
		}
		if ou := cert.Subject.OrganizationalUnit; len(ou) != 1 || ou[0] != role {
			t.Errorf("%s OU %v, want [%s]", file, ou, role)
		}
	}
}

func TestRunKeepsAnExistingInstallation(t *testing.T) {
	requiresRoot(t)
	dir := t.TempDir()
	o := Options{Dir: dir, Address: "127.0.0.1", Port: 50051}
	if _, err := Run(o); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, DaemonConfig))
	if _, err := Run(o); !errors.Is(err, ErrConfigured) {
		t.Fatalf("second Run: %v, want ErrConfigured", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, DaemonConfig))
	if string(before) != string(after) {
		t.Error("a second Run without Force changed the config")
	}
	o.Force = true
	if _, err := Run(o); err != nil {
		t.Fatal(err)
	}
	forced, _ := os.ReadFile(filepath.Join(dir, DaemonConfig))
	if string(forced) == string(before) {
		t.Error("Force did not replace the config")
	}
}

func TestRunStartsFromTheTemplate(t *testing.T) {
	requiresRoot(t)
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "template.yml")
	if err := os.WriteFile(tmpl, []byte("server:\n  port: 6000\njoblet:\n  maxConcurrentJobs: 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(Options{Dir: dir, Template: tmpl, Address: "h"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, DaemonConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Port != 6000 || cfg.Joblet.MaxConcurrentJobs != 7 {
		t.Errorf("port %d, maxConcurrentJobs %d: template not used", cfg.Server.Port, cfg.Joblet.MaxConcurrentJobs)
	}
}

func TestClientIssuesFromTheKeptCA(t *testing.T) {
	requiresRoot(t)
	dir := t.TempDir()
	if _, err := Run(Options{Dir: dir, Address: "127.0.0.1", Port: 50051}); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := Main([]string{"client", "--dir", dir, "--name", "alice", "--role", "viewer"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "address: 127.0.0.1:50051") {
		t.Errorf("client config does not name the admin config's address:\n%s", out.String())
	}
	if _, err := Client(dir, "h:1", "bob", "root"); err == nil {
		t.Error("an unknown role was accepted")
	}
}

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to Load: it must never panic, and whatever
// it accepts must satisfy Validate's promises (absolute paths, a port in
// range, no negative durations or byte limits).
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		"",
		"version: \"1\"\n",
		"paths:\n  runDir: /run/j\n  stateDir: /var/lib/j\n",
		"paths:\n  runDir: run\n",
		"server:\n  port: 70000\n",
		"security:\n  revocationFile: revoked.txt\n",
		"security:\n  revocationFile: /etc/joblet/revoked.txt\n",
		"joblet:\n  stopGracePeriod: -5s\n",
		"uploads:\n  maxFileBytes: -1\n",
		"joblet:\n  tmp:\n    maxInodes: -1\n",
		"nodes: [1, 2\n",
		"a: &a [*a]\n",
		"paths: {runDir: \"/\\0\"}\n",
		"paths:\n  runDir: /a/../b\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "c.yml")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p)
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatalf("Load(%q): empty error", b)
			}
			return
		}
		if !filepath.IsAbs(c.Paths.RunDir) || !filepath.IsAbs(c.Paths.StateDir) {
			t.Fatalf("Load(%q) accepted relative paths %q, %q", b, c.Paths.RunDir, c.Paths.StateDir)
		}
		if c.Security.RevocationFile != "" && !filepath.IsAbs(c.Security.RevocationFile) {
			t.Fatalf("Load(%q) accepted a relative revocation file %q", b, c.Security.RevocationFile)
		}
		if c.Server.Port < 0 || c.Server.Port > 65535 || c.Joblet.StopGracePeriod < 0 ||
			c.Uploads.MaxFileBytes < 0 || c.Uploads.MaxTotalBytes < 0 ||
			c.Joblet.Workspace.MaxBytes < 0 || c.Joblet.Workspace.MaxInodes < 0 || c.Joblet.Tmp.MaxBytes < 0 || c.Joblet.Tmp.MaxInodes < 0 {
			t.Fatalf("Load(%q) accepted out-of-range values: %+v", b, c)
		}
	})
}

// FuzzValidatePaths checks that Validate accepts a path exactly when it is
// absolute, for each of the paths it checks.
func FuzzValidatePaths(f *testing.F) {
	for _, s := range []string{"/run/joblet", "run", "", ".", "./a", "../a", "//x", "/a\x00b", " /a", "C:\\x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for name, set := range map[string]func(*Config){
			"runDir":         func(c *Config) { c.Paths.RunDir = s },
			"stateDir":       func(c *Config) { c.Paths.StateDir = s },
			"revocationFile": func(c *Config) { c.Security.RevocationFile = s },
		} {
			c := Default()
			set(&c)
			err := c.Validate()
			want := filepath.IsAbs(s) || (name == "revocationFile" && s == "")
			if (err == nil) != want {
				t.Fatalf("%s %q: Validate() = %v, want accepted=%v", name, s, err, want)
			}
		}
	})
}

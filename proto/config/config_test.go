package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSaveLoad(t *testing.T) {
	c := Default()
	c.Paths.RunDir = t.TempDir()
	c.Joblet.StopGracePeriod = 3 * time.Second
	p := filepath.Join(t.TempDir(), "c.yml")
	if err := Save(c, p, 0o640, os.Getgid()); err != nil {
		t.Fatal(err)
	}
	got, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Joblet.StopGracePeriod != 3*time.Second || got.Paths.RunDir != c.Paths.RunDir {
		t.Fatalf("round trip: %+v", got)
	}
}

func TestValidate(t *testing.T) {
	for name, mut := range map[string]func(*Config){
		"relative run dir":         func(c *Config) { c.Paths.RunDir = "run" },
		"relative revocation file": func(c *Config) { c.Security.RevocationFile = "revoked.txt" },
		"port":                     func(c *Config) { c.Server.Port = 70000 },
		"grace":                    func(c *Config) { c.Joblet.StopGracePeriod = -1 },
		"upload per file":          func(c *Config) { c.Uploads.MaxFileBytes = -1 },
		"upload per job":           func(c *Config) { c.Uploads.MaxTotalBytes = -1 },
	} {
		c := Default()
		mut(&c)
		if c.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

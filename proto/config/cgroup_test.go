package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCgroupDriver(t *testing.T) {
	for _, c := range []struct{ driver, slice, err string }{
		{driver: ""},
		{driver: "auto"},
		{driver: "cgroupfs"},
		{driver: "systemd", slice: "joblet.slice"},
		{driver: "systemd", slice: "batch-joblet.slice"},
		{driver: "docker", err: `joblet.cgroupDriver "docker": want auto, cgroupfs or systemd`},
		{driver: "systemd", slice: "joblet", err: `joblet.cgroupSlice "joblet": want a slice unit name`},
		{driver: "systemd", slice: "a/b.slice", err: `joblet.cgroupSlice "a/b.slice": want a slice unit name`},
	} {
		cfg := Default()
		cfg.Joblet.CgroupDriver, cfg.Joblet.CgroupSlice = c.driver, c.slice
		err := cfg.Validate()
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("driver %q slice %q: Validate = %v, want %q", c.driver, c.slice, err, c.err)
		}
	}
	path := filepath.Join(t.TempDir(), "c.yml")
	if err := os.WriteFile(path, []byte("joblet:\n  cgroupDriver: systemd\n  cgroupSlice: jobs.slice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil || cfg.Joblet.CgroupDriver != "systemd" || cfg.Joblet.CgroupSlice != "jobs.slice" {
		t.Fatalf("Load = %+v, %v", cfg.Joblet, err)
	}
}

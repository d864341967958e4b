package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStorageCaps(t *testing.T) {
	d := Default().Joblet
	if d.Workspace != (Storage{MaxBytes: 1 << 30, MaxInodes: 65536}) || d.Tmp != (Storage{MaxBytes: 256 << 20, MaxInodes: 16384}) {
		t.Errorf("default caps: workspace %+v, tmp %+v", d.Workspace, d.Tmp)
	}
	path := filepath.Join(t.TempDir(), "c.yml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("joblet:\n  workspace: {maxBytes: 1048576}\n  tmp: {maxInodes: 100}\n")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Joblet.Workspace != (Storage{MaxBytes: 1 << 20, MaxInodes: 65536}) || c.Joblet.Tmp != (Storage{MaxBytes: 256 << 20, MaxInodes: 100}) {
		t.Errorf("loaded caps: workspace %+v, tmp %+v", c.Joblet.Workspace, c.Joblet.Tmp)
	}
	write("joblet:\n  tmp: {maxBytes: -1}\n")
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "joblet.tmp") {
		t.Errorf("negative cap: got %v, want an error naming joblet.tmp", err)
	}
}

func TestReadyNamespaces(t *testing.T) {
	if n := Default().Network.ReadyNamespaces; n != 2 {
		t.Errorf("default network.readyNamespaces %d, want 2", n)
	}
	path := filepath.Join(t.TempDir(), "c.yml")
	for _, tc := range []struct {
		yaml string
		want int
		err  bool
	}{
		{"network: {checkInterval: 1s}\n", 2, false},
		{"network: {readyNamespaces: 0}\n", 0, false},
		{"network: {readyNamespaces: 5}\n", 5, false},
		{"network: {readyNamespaces: -1}\n", 0, true},
		{"network: {readyNamespaces: 65}\n", 0, true},
	} {
		if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path)
		if tc.err {
			if err == nil || !strings.Contains(err.Error(), "network.readyNamespaces") {
				t.Errorf("%q: got %v, want an error naming network.readyNamespaces", tc.yaml, err)
			}
			continue
		}
		if err != nil || c.Network.ReadyNamespaces != tc.want {
			t.Errorf("%q: %d %v, want %d", tc.yaml, c.Network.ReadyNamespaces, err, tc.want)
		}
	}
}

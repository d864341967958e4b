package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestUserNamespace(t *testing.T) {
	d := Default().Joblet.UserNamespace
	if !d.Enabled || d.HostUID != DefaultUserNamespaceBase || d.HostGID != DefaultUserNamespaceBase || d.Size != 65536 {
		t.Errorf("default: %+v", d)
	}
	for name, u := range map[string]UserNamespace{
		"size 0":        {Enabled: true, HostUID: 100000, HostGID: 100000},
		"host root uid": {Enabled: true, HostUID: 0, HostGID: 100000, Size: 1},
		"host root gid": {Enabled: true, HostUID: 100000, HostGID: 0, Size: 1},
		"past the top":  {Enabled: true, HostUID: 4294967290, HostGID: 100000, Size: 6},
	} {
		c := Default()
		c.Joblet.UserNamespace = u
		if c.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
		u.Enabled = false
		c.Joblet.UserNamespace = u
		if err := c.Validate(); err != nil {
			t.Errorf("%s, disabled: %v", name, err)
		}
	}
	// Only what the file says replaces the defaults.
	p := filepath.Join(t.TempDir(), "c.yml")
	if err := os.WriteFile(p, []byte("joblet:\n  userNamespace:\n    hostUID: 3000000000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	want := UserNamespace{Enabled: true, HostUID: 3000000000, HostGID: DefaultUserNamespaceBase, Size: 65536}
	if c.Joblet.UserNamespace != want {
		t.Errorf("loaded %+v, want %+v", c.Joblet.UserNamespace, want)
	}
	if err := os.WriteFile(p, []byte("joblet:\n  userNamespace:\n    enabled: false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err = Load(p); err != nil || c.Joblet.UserNamespace.Enabled {
		t.Errorf("disabled: %+v %v", c.Joblet.UserNamespace, err)
	}
}

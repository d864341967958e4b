package state

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "netd")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Load()
	if err != nil || len(st.Networks) != 0 {
		t.Fatalf("empty load: %+v %v", st, err)
	}
	st.Networks = []Network{{Name: "bridge", CIDR: "172.20.0.0/16", Bridge: "joblet0", Builtin: true, Next: "172.20.0.3"}}
	st.Leases = []Lease{{JobID: "1", Network: "bridge", Name: "api", IP: "172.20.0.2", Veth: "jv0123"}, {JobID: "2", Network: "none"},
		{JobID: "3", Network: "bridge", IP: "172.20.0.4", Veth: "jv4567", Netns: "_spare-0a1b"}}
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	st.Version = Version
	if !reflect.DeepEqual(got, st) {
		t.Fatalf("loaded %+v, saved %+v", got, st)
	}
	if fi, err := os.Stat(filepath.Join(dir, "state.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode: %v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "state.json.tmp")); !os.IsNotExist(err) {
		t.Fatalf("temp file left: %v", err)
	}
}

func TestLoadRefusesGarbage(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	os.WriteFile(filepath.Join(dir, "state.json"), []byte("{"), 0o600)
	if _, err := s.Load(); err == nil {
		t.Fatal("garbage state loaded")
	}
	os.WriteFile(filepath.Join(dir, "state.json"), []byte(`{"version":99}`), 0o600)
	if _, err := s.Load(); err == nil {
		t.Fatal("future version loaded")
	}
}

func TestBootID(t *testing.T) {
	a, err := BootID()
	if err != nil || len(a) != 36 {
		t.Fatalf("boot id %q %v", a, err)
	}
	if b, _ := BootID(); b != a {
		t.Fatalf("boot id changed: %q then %q", a, b)
	}
}

package cli

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSessionFile: a command saves its TLS session under the home
// directory's cache (0600), or where RNX_SESSION_CACHE says, and nowhere
// with RNX_SESSION_CACHE=off.
func TestSessionFile(t *testing.T) {
	s := newSuite(t)
	home := t.TempDir()
	other := filepath.Join(t.TempDir(), "sessions")
	for _, tc := range []struct {
		name string
		env  map[string]string
		file string // "" : no file anywhere
	}{
		{"default", nil, filepath.Join(home, ".cache", "rnx", "tls-sessions")},
		{"RNX_SESSION_CACHE", map[string]string{"RNX_SESSION_CACHE": other}, other},
		{"off", map[string]string{"RNX_SESSION_CACHE": "off"}, ""},
	} {
		os.RemoveAll(filepath.Join(home, ".cache"))
		os.Remove(other)
		r := s.rnxWith(t, func(e *Env) {
			e.Home = home
			e.Getenv = func(k string) string { return tc.env[k] }
		}, "list")
		if r.code != 0 {
			t.Fatalf("%s: rnx list: %d %s", tc.name, r.code, r.stderr)
		}
		for _, f := range []string{filepath.Join(home, ".cache", "rnx", "tls-sessions"), other} {
			fi, err := os.Stat(f)
			switch {
			case f == tc.file && err != nil:
				t.Errorf("%s: no session file: %v", tc.name, err)
			case f == tc.file && fi.Mode() != 0o600:
				t.Errorf("%s: %s has mode %v, want 0600", tc.name, f, fi.Mode())
			case f != tc.file && err == nil:
				t.Errorf("%s: unexpected session file %s", tc.name, f)
			}
		}
	}
}

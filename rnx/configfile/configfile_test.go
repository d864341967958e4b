package configfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tree makes files (relative to a temp root) and returns the root.
func tree(t *testing.T, files ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range files {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("nodes: {}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func envOf(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestLocateOrder(t *testing.T) {
	root := tree(t,
		"repo/.dev/rnx-admin.yml",
		"repo/sub/dir/.keep",
		"devdir/rnx-admin.yml",
		"home/.rnx/rnx-config.yml",
		"system.yml",
	)
	at := func(p string) string { return filepath.Join(root, p) }
	base := Env{Dir: at("repo/sub/dir"), Home: at("home"), System: at("system.yml"), Getenv: envOf(nil)}
	for _, tc := range []struct {
		name string
		edit func(*Env)
		want string
	}{
		{"flag wins", func(e *Env) {
			e.Flag = "/named/by/flag.yml"
			e.Getenv = envOf(map[string]string{"RNX_CONFIG": at("system.yml")})
		}, "/named/by/flag.yml"},
		{"RNX_CONFIG even if missing", func(e *Env) {
			e.Getenv = envOf(map[string]string{"RNX_CONFIG": "/missing.yml", "JOBLET_DEV_DIR": at("devdir")})
		}, "/missing.yml"},
		{"JOBLET_DEV_DIR before walk-up", func(e *Env) {
			e.Getenv = envOf(map[string]string{"JOBLET_DEV_DIR": at("devdir")})
		}, at("devdir/rnx-admin.yml")},
		{"JOBLET_DEV_DIR without a config falls through", func(e *Env) {
			e.Getenv = envOf(map[string]string{"JOBLET_DEV_DIR": at("home")})
		}, at("repo/.dev/rnx-admin.yml")},
		{"walk up from a subdirectory", func(*Env) {}, at("repo/.dev/rnx-admin.yml")},
		{"walk up from the repo root", func(e *Env) { e.Dir = at("repo") }, at("repo/.dev/rnx-admin.yml")},
		{"home", func(e *Env) { e.Dir = at("home") }, at("home/.rnx/rnx-config.yml")},
		{"system", func(e *Env) { e.Dir, e.Home = at("home"), "" }, at("system.yml")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := base
			tc.edit(&e)
			got, err := Locate(e)
			if err != nil || got != tc.want {
				t.Fatalf("Locate = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestLocateNothingFound(t *testing.T) {
	root := tree(t, "empty/.keep")
	_, err := Locate(Env{
		Dir: filepath.Join(root, "empty"), Home: filepath.Join(root, "home"),
		System: filepath.Join(root, "system.yml"),
		Getenv: envOf(map[string]string{"JOBLET_DEV_DIR": filepath.Join(root, "dev")}),
	})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	want := "no rnx config found; looked in: " + root + "/dev/rnx-admin.yml, .dev/rnx-admin.yml in " + root +
		"/empty and its parents, " + root + "/home/.rnx/rnx-config.yml, " + root + "/system.yml; use --config PATH or RNX_CONFIG"
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("err = %q\nwant prefix %q", err, want)
	}
}

func TestSessionCache(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		home string
		want string
	}{
		{"home", nil, "/home/u", "/home/u/.cache/rnx/tls-sessions"},
		{"XDG_CACHE_HOME", map[string]string{"XDG_CACHE_HOME": "/xdg"}, "/home/u", "/xdg/rnx/tls-sessions"},
		{"relative XDG_CACHE_HOME ignored", map[string]string{"XDG_CACHE_HOME": "xdg"}, "/home/u", "/home/u/.cache/rnx/tls-sessions"},
		{"RNX_SESSION_CACHE", map[string]string{"RNX_SESSION_CACHE": "/tmp/s", "XDG_CACHE_HOME": "/xdg"}, "/home/u", "/tmp/s"},
		{"off", map[string]string{"RNX_SESSION_CACHE": "off"}, "/home/u", ""},
		{"no home", nil, "", ""},
	} {
		if got := SessionCache(envOf(tc.env), tc.home); got != tc.want {
			t.Errorf("%s: SessionCache = %q, want %q", tc.name, got, tc.want)
		}
	}
}

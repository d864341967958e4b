package devenv

import (
	"os/user"
	"path/filepath"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestResolveDir(t *testing.T) {
	wd, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		exe  string
		want string
	}{
		{"next to bin", nil, "/src/joblet/bin/joblet", "/src/joblet/.dev"},
		{"unclean exe path", nil, "/src/joblet/bin/../bin/joblet", "/src/joblet/.dev"},
		{"env wins", map[string]string{EnvDir: "/var/tmp/dev"}, "/src/joblet/bin/joblet", "/var/tmp/dev"},
		{"relative env made absolute", map[string]string{EnvDir: "rel/dev"}, "/x/bin/joblet", filepath.Join(wd, "rel/dev")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolveDir(env(tc.env), tc.exe)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("ResolveDir = %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := ResolveDir(env(nil), ""); err == nil {
		t.Fatal("no executable and no env: want an error")
	}
}

func TestLayout(t *testing.T) {
	l := Layout{Dir: "/d"}
	for got, want := range map[string]string{
		l.ConfigPath():   "/d/joblet-config.yml",
		l.CertsDir():     "/d/certs",
		l.AdminConfig():  "/d/rnx-admin.yml",
		l.ViewerConfig(): "/d/rnx-viewer.yml",
		l.StateDir():     "/d/state",
		l.RunDir():       "/d/run",
		l.PidsFile():     "/d/state/supervisor/pids.json",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func lookup(users map[string]*user.User, groups map[string]*user.Group) Lookup {
	return Lookup{
		User: func(n string) (*user.User, error) {
			if u, ok := users[n]; ok {
				return u, nil
			}
			return nil, user.UnknownUserError(n)
		},
		Group: func(n string) (*user.Group, error) {
			if g, ok := groups[n]; ok {
				return g, nil
			}
			return nil, user.UnknownGroupError(n)
		},
	}
}

func TestGatewayIdentity(t *testing.T) {
	joblet := map[string]*user.User{
		"joblet": {Username: "joblet", Uid: "998", Gid: "997"},
		"nobody": {Username: "nobody", Uid: "65534", Gid: "65534"},
	}
	nobodyOnly := map[string]*user.User{"nobody": {Username: "nobody", Uid: "65534", Gid: "65534"}}
	nogroup := map[string]*user.Group{"nogroup": {Name: "nogroup", Gid: "65534"}}
	tests := []struct {
		name    string
		env     map[string]string
		lk      Lookup
		want    Identity
		wantErr bool
	}{
		{"joblet user", nil, lookup(joblet, nogroup), Identity{998, 997}, false},
		{"nobody and nogroup", nil, lookup(nobodyOnly, nogroup), Identity{65534, 65534}, false},
		{"nothing in the user database", nil, lookup(nil, nil), Identity{65534, 65534}, false},
		{"override", map[string]string{EnvGatewayUser: "1234:5678"}, lookup(joblet, nogroup), Identity{1234, 5678}, false},
		{"override as root refused", map[string]string{EnvGatewayUser: "0:0"}, lookup(joblet, nogroup), Identity{}, true},
		{"override with root group refused", map[string]string{EnvGatewayUser: "1000:0"}, lookup(nil, nil), Identity{}, true},
		{"override malformed", map[string]string{EnvGatewayUser: "1000"}, lookup(nil, nil), Identity{}, true},
		{"override not numeric", map[string]string{EnvGatewayUser: "joblet:joblet"}, lookup(nil, nil), Identity{}, true},
		{"joblet user is root", nil, lookup(map[string]*user.User{"joblet": {Uid: "0", Gid: "0"}}, nil), Identity{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := GatewayIdentity(env(tc.env), tc.lk)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != tc.want {
				t.Fatalf("identity = %+v, want %+v", got, tc.want)
			}
		})
	}
}

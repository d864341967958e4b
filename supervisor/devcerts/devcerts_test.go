package devcerts

import (
	"bytes"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/deploy/certs"
)

var hosts = []string{"localhost", "127.0.0.1", "::1", "devbox"}

func TestFirstStartIssuesEverything(t *testing.T) {
	dir := t.TempDir()
	b, err := Ensure(dir, hosts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ca", "server", "admin", "viewer"}; !slices.Equal(b.Issued, want) {
		t.Fatalf("issued %v, want %v", b.Issued, want)
	}
	srv, err := certs.ParseCert(b.Server.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if err := srv.VerifyHostname(h); err != nil {
			t.Errorf("server certificate does not cover %s: %v", h, err)
		}
	}
	for pair, role := range map[*certs.Pair]string{&b.Admin: certs.RoleAdmin, &b.Viewer: certs.RoleViewer} {
		c, err := certs.ParseCert(pair.CertPEM)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(c.Subject.OrganizationalUnit, []string{role}) {
			t.Errorf("client OU = %v, want [%s]", c.Subject.OrganizationalUnit, role)
		}
	}
	_, key := Paths(dir, "admin")
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin key mode: %v %v, want 0600", fi.Mode(), err)
	}
}

func TestReuse(t *testing.T) {
	dir := t.TempDir()
	first, err := Ensure(dir, hosts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	again, err := Ensure(dir, hosts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Issued) != 0 {
		t.Fatalf("second start issued %v, want nothing", again.Issued)
	}
	if !bytes.Equal(first.Admin.CertPEM, again.Admin.CertPEM) || !bytes.Equal(first.CA.CertPEM, again.CA.CertPEM) {
		t.Fatal("second start returned different certificates")
	}
}

func TestRegenerates(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(t *testing.T, dir string)
		now   time.Time
		hosts []string
		want  []string
	}{
		{"missing viewer key", func(t *testing.T, dir string) { _, k := Paths(dir, "viewer"); os.Remove(k) }, time.Now(), hosts, []string{"viewer"}},
		{"garbage server cert", func(t *testing.T, dir string) {
			c, _ := Paths(dir, "server")
			os.WriteFile(c, []byte("not a certificate"), 0o644)
		}, time.Now(), hosts, []string{"server"}},
		{"new hostname", func(*testing.T, string) {}, time.Now(), append(slices.Clone(hosts), "renamed"), []string{"server"}},
		{"leaves expire within a week", func(*testing.T, string) {}, time.Now().Add(certs.LeafValidity - 6*24*time.Hour), hosts, []string{"server", "admin", "viewer"}},
		{"CA replaced: every leaf follows", func(t *testing.T, dir string) { c, _ := Paths(dir, "ca"); os.Remove(c) }, time.Now(), hosts, []string{"ca", "server", "admin", "viewer"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Ensure(dir, hosts, time.Now()); err != nil {
				t.Fatal(err)
			}
			tc.spoil(t, dir)
			b, err := Ensure(dir, tc.hosts, tc.now)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(b.Issued, tc.want) {
				t.Fatalf("issued %v, want %v", b.Issued, tc.want)
			}
			// New certificates are dated from the real clock.
			if again, err := Ensure(dir, tc.hosts, time.Now()); err != nil || len(again.Issued) != 0 {
				t.Fatalf("after repair: issued %v (err %v), want nothing", again.Issued, err)
			}
		})
	}
}

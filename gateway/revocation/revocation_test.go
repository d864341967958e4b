package revocation

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/joblet-dev/joblet/deploy/certs"
	"github.com/joblet-dev/joblet/gateway/internal/crltest"
)

func newCA(t *testing.T) (*certs.CA, []*x509.Certificate) {
	t.Helper()
	ca, err := certs.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	c, err := certs.ParseCert(ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	return ca, []*x509.Certificate{c}
}

func cert(serial int64) *x509.Certificate { return &x509.Certificate{SerialNumber: big.NewInt(serial)} }

func TestParseSerials(t *testing.T) {
	_, cas := newCA(t)
	set, err := Parse([]byte("# revoked by ops\n\n1a2b\n0x00FF # bob's laptop\n  01:02:03  \n"), cas)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []int64{0x1a2b, 0xff, 0x010203} {
		if !set[Key(big.NewInt(s))] {
			t.Errorf("%x not revoked: %v", s, set)
		}
	}
	if len(set) != 3 {
		t.Errorf("got %v", set)
	}
}

func TestParseRefusesGarbage(t *testing.T) {
	other, _ := newCA(t)
	ca, cas := newCA(t)
	for name, tc := range map[string]struct{ in, msg string }{
		"not hex":          {"12\nzz\n", `line 2: "zz" is not a certificate serial`},
		"too long":         {strings.Repeat("a", 41), "at most 20 bytes"},
		"another CA's CRL": {string(crltest.CRL(t, other, big.NewInt(5))), "not signed by the CA"},
		"unterminated CRL": {"-----BEGIN X509 CRL-----\nAAAA\n", "no -----END X509 CRL----- line"},
		"broken CRL":       {"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n", "CRL at line 1"},
		"other PEM":        {string(ca.CertPEM), "is not a certificate serial"},
	} {
		if _, err := Parse([]byte(tc.in), cas); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, tc.msg)
		}
	}
}

func TestParseCRLAndSerials(t *testing.T) {
	ca, cas := newCA(t)
	in := "7\n" + string(crltest.CRL(t, ca, big.NewInt(0x42), big.NewInt(0x43))) + "# and one more\n9\n"
	set, err := Parse([]byte(in), cas)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []int64{7, 0x42, 0x43, 9} {
		if !set[Key(big.NewInt(s))] {
			t.Errorf("%x not revoked: %v", s, set)
		}
	}
	if len(set) != 4 {
		t.Errorf("got %v", set)
	}
}

func TestLoadNeedsTheFile(t *testing.T) {
	ca, _ := newCA(t)
	if _, err := Load(filepath.Join(t.TempDir(), "none"), ca.CertPEM); err == nil {
		t.Fatal("a missing revocation file was accepted")
	}
	p := filepath.Join(t.TempDir(), "revoked")
	os.WriteFile(p, []byte("nothex\n"), 0o644)
	if _, err := Load(p, ca.CertPEM); err == nil {
		t.Fatal("a malformed revocation file was accepted")
	}
	if _, err := Load(p, []byte("no pem")); err == nil {
		t.Fatal("a CA without a certificate was accepted")
	}
}

func TestNilListRevokesNothing(t *testing.T) {
	var l *List
	if l.Revoked(cert(1)) || l.Len() != 0 || l.Changed() != nil {
		t.Fatal("nil list is not empty")
	}
	l.Watch(context.Background(), time.Millisecond, zerolog.Nop()) // returns at once
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWatchReloads edits the file in place and by rename while Watch runs;
// a broken edit keeps the last good list.
func TestWatchReloads(t *testing.T) {
	ca, _ := newCA(t)
	p := filepath.Join(t.TempDir(), "revoked")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := Load(p, ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Watch(ctx, 10*time.Millisecond, zerolog.New(logs)); close(done) }()
	defer func() { cancel(); <-done }()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 5s; logs:\n%s", what, logs.String())
			}
		}
	}

	changed := l.Changed()
	if err := os.WriteFile(p, []byte("2a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor("revoke", func() bool { return l.Revoked(cert(0x2a)) })
	select {
	case <-changed:
	default:
		t.Fatal("Changed() was not closed on reload")
	}

	// Replaced by rename, as editors and config tools do.
	tmp := p + ".new"
	os.WriteFile(tmp, crltest.CRL(t, ca, big.NewInt(0x2b)), 0o644)
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	waitFor("CRL", func() bool { return l.Revoked(cert(0x2b)) && !l.Revoked(cert(0x2a)) })

	// A broken edit and a deleted file keep the last good list.
	os.WriteFile(p, []byte("not a serial, and longer\n"), 0o644)
	waitFor("error logged", func() bool { return strings.Contains(logs.String(), "not reloaded") })
	os.Remove(p)
	waitFor("missing logged", func() bool { return strings.Contains(logs.String(), "unreadable") })
	if !l.Revoked(cert(0x2b)) {
		t.Fatal("a broken or missing file un-revoked a certificate")
	}

	os.WriteFile(p, []byte(fmt.Sprintf("%x\n", 7)), 0o644)
	waitFor("back", func() bool { return l.Revoked(cert(7)) && !l.Revoked(cert(0x2b)) && l.Len() == 1 })
}

// FuzzParse feeds arbitrary revocation files to Parse: it never panics, and
// every serial it accepts is a non-negative number of at most 20 bytes.
func FuzzParse(f *testing.F) {
	ca, err := certs.NewCA("fuzz CA")
	if err != nil {
		f.Fatal(err)
	}
	c, err := certs.ParseCert(ca.CertPEM)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"", "1a\n", "0x01:02\n#x\n", "-1\n", "zz", "-----BEGIN X509 CRL-----\n",
		string(crltest.CRL(f, ca, big.NewInt(3))), "0x\n", ":::\n", strings.Repeat("f", 40)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		set, err := Parse(b, []*x509.Certificate{c})
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("Parse(%q): message not one line: %q", b, err)
			}
			return
		}
		for k := range set {
			v, ok := new(big.Int).SetString(k, 16)
			if !ok || v.Sign() < 0 || v.BitLen() > 160 || Key(v) != k {
				t.Fatalf("Parse(%q) accepted serial %q", b, k)
			}
		}
	})
}

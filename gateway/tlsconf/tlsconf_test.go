package tlsconf

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/joblet-dev/joblet/deploy/certs"
	"github.com/joblet-dev/joblet/proto/config"
)

func TestServer(t *testing.T) {
	ca, err := certs.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Server("localhost")
	if err != nil {
		t.Fatal(err)
	}
	good := config.Security{ServerCert: string(srv.CertPEM), ServerKey: string(srv.KeyPEM), CACert: string(ca.CertPEM)}
	tc, err := Server(good, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tc.MinVersion != tls.VersionTLS13 || tc.ClientAuth != tls.RequireAndVerifyClientCert || tc.ClientCAs == nil || tc.VerifyConnection == nil {
		t.Fatalf("config too loose: %+v", tc)
	}

	other, err := ca.Server("elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*config.Security)
		want string
	}{
		{"no CA", func(s *config.Security) { s.CACert = "" }, "must all be set"},
		{"CA not PEM", func(s *config.Security) { s.CACert = "hello" }, "security.caCert: no PEM"},
		{"key of another cert", func(s *config.Security) { s.ServerKey = string(other.KeyPEM) }, "security.serverCert/serverKey"},
	} {
		s := good
		tc.mod(&s)
		if _, err := Server(s, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
		// The key must never appear in an error message.
		if _, err := Server(s, nil); err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("%s: error shows key material", tc.name)
		}
	}
}

package client

import (
	"bytes"
	"crypto/tls"
	"strings"
	"testing"

	"github.com/joblet-dev/joblet/deploy/certs"
	"github.com/joblet-dev/joblet/proto/clientconfig"
)

func testNode(t *testing.T, addr string) *clientconfig.Node {
	t.Helper()
	ca, err := certs.NewCA("client test CA")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ca.Client("alice", certs.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	return &clientconfig.Node{Address: addr, Cert: string(p.CertPEM), Key: string(p.KeyPEM), CA: string(ca.CertPEM)}
}

func TestTLSConfig(t *testing.T) {
	for addr, host := range map[string]string{
		"127.0.0.1:50051":        "127.0.0.1",
		"joblet.example.com:443": "joblet.example.com",
		"[::1]:50051":            "::1",
	} {
		node := testNode(t, addr)
		c, err := TLSConfig(node)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		if c.MinVersion != tls.VersionTLS13 || c.ServerName != host || c.GetClientCertificate == nil || c.RootCAs == nil || c.InsecureSkipVerify {
			t.Errorf("%s: config %+v", addr, c)
		}
		checkClientCertificate(t, c, node)
	}
}

// checkClientCertificate: the config gives a full handshake the node's
// certificate, as a Certificates list of one would: to a server that
// accepts ECDSA P-256 signatures, and none at all to one that does not.
func checkClientCertificate(t *testing.T, c *tls.Config, node *clientconfig.Node) {
	t.Helper()
	want, err := tls.X509KeyPair([]byte(node.Cert), []byte(node.Key))
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.GetClientCertificate(&tls.CertificateRequestInfo{
		SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}, Version: tls.VersionTLS13,
	})
	if err != nil || len(got.Certificate) != 1 || !bytes.Equal(got.Certificate[0], want.Certificate[0]) || got.PrivateKey == nil {
		t.Errorf("certificate for a P-256 request: %v, %v", got, err)
	}
	got, err = c.GetClientCertificate(&tls.CertificateRequestInfo{
		SignatureSchemes: []tls.SignatureScheme{tls.Ed25519}, Version: tls.VersionTLS13,
	})
	if err != nil || len(got.Certificate) != 0 {
		t.Errorf("certificate for an Ed25519-only request: %v, %v; want none", got, err)
	}
}

func TestTLSConfigRefuses(t *testing.T) {
	good := testNode(t, "127.0.0.1:50051")
	for name, tc := range map[string]struct {
		edit func(*clientconfig.Node)
		want string
	}{
		"no port":  {func(n *clientconfig.Node) { n.Address = "127.0.0.1" }, `node address "127.0.0.1": want host:port`},
		"no host":  {func(n *clientconfig.Node) { n.Address = ":50051" }, "want host:port"},
		"bad cert": {func(n *clientconfig.Node) { n.Cert = "junk" }, "client certificate and key in the config"},
		"bad key":  {func(n *clientconfig.Node) { n.Key = good.CA }, "client certificate and key in the config"},
		"bad ca":   {func(n *clientconfig.Node) { n.CA = "junk" }, "ca in the config holds no PEM certificate"},
	} {
		n := *good
		tc.edit(&n)
		if _, err := TLSConfig(&n); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

package certs

import (
	"crypto/x509"
	"testing"
)

func TestIssueAndVerify(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadCA(ca.CertPEM, ca.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)

	srv, err := again.Server("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := ParseCert(srv.CertPEM)
	if _, err := sc.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("server cert: %v", err)
	}
	cl, err := again.Client("alice", RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	cc, _ := ParseCert(cl.CertPEM)
	if _, err := cc.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("client cert: %v", err)
	}
	if ou := cc.Subject.OrganizationalUnit; len(ou) != 1 || ou[0] != RoleViewer {
		t.Fatalf("OU %v", ou)
	}
}

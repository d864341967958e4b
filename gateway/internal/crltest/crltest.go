// Package crltest makes PEM certificate revocation lists signed by a test
// CA, for the gateway's revocation tests.
package crltest

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/deploy/certs"
)

// CRL returns a PEM "X509 CRL" signed by ca that revokes serials.
func CRL(t testing.TB, ca *certs.CA, serials ...*big.Int) []byte {
	t.Helper()
	caCert, err := certs.ParseCert(ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(ca.KeyPEM)
	if blk == nil {
		t.Fatal("CA key: no PEM")
	}
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(now.UnixNano()),
		ThisUpdate: now.Add(-time.Minute),
		NextUpdate: now.Add(time.Hour),
	}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: s, RevocationTime: now})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, caCert, key.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// Serial returns the serial number of a PEM certificate.
func Serial(t testing.TB, certPEM []byte) *big.Int {
	t.Helper()
	c, err := certs.ParseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}

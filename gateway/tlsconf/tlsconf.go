// Package tlsconf builds the gateway's TLS configuration from the PEM text in
// the daemon config: TLS 1.3 only, and a client certificate signed by the
// configured CA, meant for client authentication and not revoked is
// required.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"github.com/joblet-dev/joblet/proto/config"
)

// Revoker says whether a client certificate has been revoked; the gateway's
// is a *revocation.List, which the caller keeps up to date.
type Revoker interface {
	Revoked(*x509.Certificate) bool
}

// Server returns the gateway's TLS server configuration. Every handshake
// asks rev (nil: nothing is revoked), so a revocation takes effect for the
// next connection.
func Server(sec config.Security, rev Revoker) (*tls.Config, error) {
	if sec.ServerCert == "" || sec.ServerKey == "" || sec.CACert == "" {
		return nil, errors.New("security.serverCert, security.serverKey and security.caCert must all be set")
	}
	cert, err := tls.X509KeyPair([]byte(sec.ServerCert), []byte(sec.ServerKey))
	if err != nil {
		return nil, fmt.Errorf("security.serverCert/serverKey: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(sec.CACert)) {
		return nil, errors.New("security.caCert: no PEM certificate found")
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// Go verifies the chain against ClientCAs, the validity period and
		// that the chain permits client authentication.
		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  pool,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := requireClientAuthUsage(cs); err != nil {
				return err
			}
			if leaf := cs.PeerCertificates[0]; rev != nil && rev.Revoked(leaf) {
				return RevokedError(leaf)
			}
			return nil
		},
	}, nil
}

// RevokedError says which certificate was refused as revoked, by serial
// (as the revocation file names it) and CN.
func RevokedError(c *x509.Certificate) error {
	return fmt.Errorf("client certificate %q (serial %s) is revoked", c.Subject.CommonName, c.SerialNumber.Text(16))
}

// errNotClientCert refuses a leaf without the clientAuth extended key usage.
var errNotClientCert = errors.New("client certificate is not for client authentication (extKeyUsage clientAuth missing)")

// requireClientAuthUsage is stricter than Go's chain check, which accepts a
// leaf that lists no extended key usage at all: Joblet's client certificates
// always name clientAuth, so one that does not is not one of ours.
func requireClientAuthUsage(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no client certificate")
	}
	leaf := cs.PeerCertificates[0]
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return errNotClientCert
	}
	return nil
}

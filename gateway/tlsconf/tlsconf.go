// Package tlsconf builds the gateway's TLS configuration from the PEM text in
// the daemon config: TLS 1.3 only, and a client certificate signed by the
// configured CA, meant for client authentication and not revoked is
// required. Sessions may be resumed (rnx keeps them between commands), for
// at most SessionLifetime after the full handshake that proved the client's
// key, and every check above runs on a resumed session too.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

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
	base := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// Go verifies the chain against ClientCAs, the validity period and
		// that the chain permits client authentication. On a resumed
		// session it checks again that the certificates carried in the
		// ticket are within their validity and chain to ClientCAs.
		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  pool,
		// Called for every handshake, resumed ones included (the ticket
		// carries the client's certificates): a certificate revoked since
		// its ticket was issued is refused all the same.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := requireClientAuthUsage(cs); err != nil {
				return err
			}
			if leaf := cs.PeerCertificates[0]; rev != nil && rev.Revoked(leaf) {
				return RevokedError(leaf)
			}
			return nil
		},
	}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return boundSessions(base), nil }
	return base, nil
}

// SessionLifetime bounds how long after a full handshake (the client's
// private key used) its session may be resumed, across all the tickets
// issued on the resumed connections that followed. Go's own bound is 7 days
// and restarts with each resumed connection's new ticket. A stolen session
// cache is then of use for an hour at most; revocation and the
// certificates' expiry are checked on each resumption anyway.
const SessionLifetime = time.Hour

// authTag marks the Extra entry of a session that holds the time of the
// full handshake it descends from (Unix seconds, 8 bytes big-endian).
const authTag = "joblet-auth-at:"

// boundSessions returns, for one connection, base with tickets that carry
// the time of the full handshake they descend from and that are refused
// once SessionLifetime has passed since. The closures share the time found
// in the ticket the connection resumes, which its new ticket inherits; the
// tickets are sealed with base's keys, so every connection's tickets are
// good for every other.
func boundSessions(base *tls.Config) *tls.Config {
	c := base.Clone()
	c.GetConfigForClient = nil
	var resumedAuth time.Time // of the last ticket UnwrapSession accepted
	c.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := base.DecryptTicket(identity, cs)
		if err != nil || ss == nil {
			return nil, err
		}
		at, ok := authTime(ss.Extra)
		if !ok || now(base).Sub(at) > SessionLifetime || at.After(now(base)) {
			return nil, nil // a full handshake instead
		}
		resumedAuth = at
		return ss, nil
	}
	c.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		at := now(base)
		if cs.DidResume {
			at = resumedAuth
		}
		ss.Extra = append(ss.Extra, binary.BigEndian.AppendUint64([]byte(authTag), uint64(at.Unix())))
		return base.EncryptTicket(cs, ss)
	}
	return c
}

// authTime finds the full handshake's time in a session's Extra.
func authTime(extra [][]byte) (time.Time, bool) {
	for _, e := range extra {
		if len(e) == len(authTag)+8 && string(e[:len(authTag)]) == authTag {
			return time.Unix(int64(binary.BigEndian.Uint64(e[len(authTag):])), 0), true
		}
	}
	return time.Time{}, false
}

// now is c's clock, as crypto/tls reads it.
func now(c *tls.Config) time.Time {
	if c.Time != nil {
		return c.Time()
	}
	return time.Now()
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

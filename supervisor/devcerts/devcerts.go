// Package devcerts keeps the development PKI of embedded mode in a directory:
// a CA, the gateway's server certificate and an admin and a viewer client
// certificate. Valid files are reused; anything missing, unparseable, not
// signed by the CA, not covering the hosts or expiring soon is issued anew.
package devcerts

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/joblet-dev/joblet/deploy/certs"
)

// RenewBefore is how close to expiry a certificate is replaced.
const RenewBefore = 7 * 24 * time.Hour

// Client common names of the dev client certificates.
const (
	AdminCN  = "dev-admin"
	ViewerCN = "dev-viewer"
)

// Bundle is the dev PKI.
type Bundle struct {
	CA                    *certs.CA
	Server, Admin, Viewer certs.Pair
	// Issued names the files (without extension) made by this call.
	Issued []string
}

// Ensure loads the PKI from dir, issuing whatever is not fit for use at now.
// hosts are the names and addresses the server certificate must cover.
func Ensure(dir string, hosts []string, now time.Time) (Bundle, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Bundle{}, fmt.Errorf("certificates directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return Bundle{}, fmt.Errorf("certificates directory: %w", err)
	}
	var b Bundle
	ca, caCert, err := loadCA(dir, now)
	if err != nil {
		if ca, err = certs.NewCA("joblet-dev-ca"); err != nil {
			return Bundle{}, err
		}
		if err := save(dir, "ca", certs.Pair{CertPEM: ca.CertPEM, KeyPEM: ca.KeyPEM}); err != nil {
			return Bundle{}, err
		}
		if caCert, err = certs.ParseCert(ca.CertPEM); err != nil {
			return Bundle{}, err
		}
		b.Issued = append(b.Issued, "ca")
	}
	b.CA = ca

	leaves := []struct {
		name  string
		dst   *certs.Pair
		fit   func(*x509.Certificate) bool
		issue func() (certs.Pair, error)
	}{
		{"server", &b.Server, coversHosts(hosts), func() (certs.Pair, error) { return ca.Server(hosts...) }},
		{"admin", &b.Admin, hasRole(certs.RoleAdmin), func() (certs.Pair, error) { return ca.Client(AdminCN, certs.RoleAdmin) }},
		{"viewer", &b.Viewer, hasRole(certs.RoleViewer), func() (certs.Pair, error) { return ca.Client(ViewerCN, certs.RoleViewer) }},
	}
	for _, l := range leaves {
		p, err := loadLeaf(dir, l.name, caCert, now, l.fit)
		if err != nil {
			if p, err = l.issue(); err != nil {
				return Bundle{}, fmt.Errorf("issue %s certificate: %w", l.name, err)
			}
			if err := save(dir, l.name, p); err != nil {
				return Bundle{}, err
			}
			b.Issued = append(b.Issued, l.name)
		}
		*l.dst = p
	}
	return b, nil
}

// Paths of the certificate and key files of name inside dir.
func Paths(dir, name string) (cert, key string) {
	return filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
}

func loadCA(dir string, now time.Time) (*certs.CA, *x509.Certificate, error) {
	p, err := read(dir, "ca")
	if err != nil {
		return nil, nil, err
	}
	ca, err := certs.LoadCA(p.CertPEM, p.KeyPEM)
	if err != nil {
		return nil, nil, err
	}
	c, err := certs.ParseCert(p.CertPEM)
	if err != nil {
		return nil, nil, err
	}
	if !c.IsCA || !current(c, now) {
		return nil, nil, errors.New("CA certificate is not a current CA")
	}
	return ca, c, nil
}

func loadLeaf(dir, name string, ca *x509.Certificate, now time.Time, fit func(*x509.Certificate) bool) (certs.Pair, error) {
	p, err := read(dir, name)
	if err != nil {
		return certs.Pair{}, err
	}
	if _, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM); err != nil {
		return certs.Pair{}, fmt.Errorf("%s: %w", name, err)
	}
	c, err := certs.ParseCert(p.CertPEM)
	if err != nil {
		return certs.Pair{}, err
	}
	if err := c.CheckSignatureFrom(ca); err != nil {
		return certs.Pair{}, fmt.Errorf("%s: not signed by the CA: %w", name, err)
	}
	if !current(c, now) || !fit(c) {
		return certs.Pair{}, fmt.Errorf("%s: expiring or not fit for use", name)
	}
	return p, nil
}

func current(c *x509.Certificate, now time.Time) bool {
	return !now.Before(c.NotBefore) && now.Add(RenewBefore).Before(c.NotAfter)
}

func coversHosts(hosts []string) func(*x509.Certificate) bool {
	return func(c *x509.Certificate) bool {
		for _, h := range hosts {
			if c.VerifyHostname(h) != nil {
				return false
			}
		}
		return true
	}
}

func hasRole(role string) func(*x509.Certificate) bool {
	return func(c *x509.Certificate) bool { return slices.Equal(c.Subject.OrganizationalUnit, []string{role}) }
}

func read(dir, name string) (certs.Pair, error) {
	cp, kp := Paths(dir, name)
	c, err := os.ReadFile(cp)
	if err != nil {
		return certs.Pair{}, err
	}
	k, err := os.ReadFile(kp)
	if err != nil {
		return certs.Pair{}, err
	}
	return certs.Pair{CertPEM: c, KeyPEM: k}, nil
}

func save(dir, name string, p certs.Pair) error {
	cp, kp := Paths(dir, name)
	if err := writeFile(kp, p.KeyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(cp, p.CertPEM, 0o644)
}

// writeFile replaces path atomically so a crash never leaves half a key.
func writeFile(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("install %s: %w", path, err)
	}
	return nil
}

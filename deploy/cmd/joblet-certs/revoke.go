package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/joblet-dev/joblet/deploy/certs"
	"github.com/joblet-dev/joblet/deploy/setup"
	"github.com/joblet-dev/joblet/proto/clientconfig"
	"github.com/joblet-dev/joblet/proto/config"
)

const revokeUsage = `usage: joblet-certs revoke (--cert FILE | --serial HEX) [--file PATH | --dir DIR]

Adds a client certificate's serial number to the revocation file the
gateway watches; the gateway refuses the certificate within seconds,
without a restart. FILE is a PEM certificate or an rnx client config with
the certificate embedded. The file is security.revocationFile of
DIR/joblet-config.yml unless --file names it.`

// revokeCmd is `joblet-certs revoke`.
func revokeCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("revoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, revokeUsage); fs.PrintDefaults() }
	certFile := fs.String("cert", "", "the certificate to revoke: PEM, or an rnx client config")
	serialHex := fs.String("serial", "", "the serial number to revoke, in hex")
	file := fs.String("file", "", "the revocation file (default: the daemon config's security.revocationFile)")
	dir := fs.String("dir", "/opt/joblet/config", "configuration directory holding "+setup.DaemonConfig)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || (*certFile == "") == (*serialHex == "") {
		return errors.New("give exactly one of --cert and --serial\n" + revokeUsage)
	}
	serial, note, err := serialToRevoke(*certFile, *serialHex)
	if err != nil {
		return err
	}
	path := *file
	if path == "" {
		cfgPath := filepath.Join(*dir, setup.DaemonConfig)
		cfg, err := config.Load(cfgPath)
		if err != nil {
			return err
		}
		if path = cfg.Security.RevocationFile; path == "" {
			return fmt.Errorf("%s sets no security.revocationFile: set it (and restart the gateway once) or pass --file", cfgPath)
		}
	}
	added, err := certs.Revoke(path, serial, note+" revoked "+time.Now().UTC().Format(time.RFC3339))
	if err != nil {
		return err
	}
	if added {
		fmt.Fprintf(stdout, "revoked serial %s in %s\n", serial.Text(16), path)
	} else {
		fmt.Fprintf(stdout, "serial %s is already revoked in %s\n", serial.Text(16), path)
	}
	return nil
}

// serialToRevoke returns the serial from a certificate file or the hex
// given, with a note naming the certificate.
func serialToRevoke(certFile, serialHex string) (*big.Int, string, error) {
	if serialHex != "" {
		s, err := certs.ParseSerial(serialHex)
		if err != nil {
			return nil, "", fmt.Errorf("--serial: %w", err)
		}
		return s, "", nil
	}
	b, err := os.ReadFile(certFile)
	if err != nil {
		return nil, "", fmt.Errorf("--cert: %w", err)
	}
	// An rnx client config first: its PEM blocks include the CA's, which a
	// plain PEM read could pick up instead of the client's.
	if cc, err := clientconfig.Load(certFile); err == nil && len(cc.Nodes) > 0 {
		n, err := cc.Node("")
		if err != nil {
			return nil, "", fmt.Errorf("--cert %s: %w", certFile, err)
		}
		b = []byte(n.Cert)
	}
	c, err := certs.ParseCert(b)
	if err != nil {
		return nil, "", fmt.Errorf("--cert %s: %w", certFile, err)
	}
	return c.SerialNumber, fmt.Sprintf("CN=%s OU=%s", c.Subject.CommonName, strings.Join(c.Subject.OrganizationalUnit, ",")), nil
}

// Package revocation keeps the gateway's list of revoked client
// certificates: a file of hex serial numbers, one a line, and/or PEM
// "X509 CRL" blocks signed by the CA. The gateway polls the file and swaps
// in the new list when it changes, so an operator revokes a certificate by
// editing one file, without a restart.
package revocation

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// DefaultPoll is how often Watch looks at the file.
const DefaultPoll = 2 * time.Second

// maxFileBytes bounds what is read: a list of a million serials fits.
const maxFileBytes = 64 << 20

// List is the current set of revoked serial numbers. The zero of *List (nil)
// revokes nothing, so a gateway without a revocation file needs no special
// case. Its methods are safe for concurrent use.
type List struct {
	path string
	cas  []*x509.Certificate

	serials atomic.Pointer[map[string]bool]

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every reload
	stamp   stamp
}

// stamp identifies a version of the file: an edit in place changes the
// modification time or size, a replacement by rename changes the inode.
type stamp struct {
	mtime time.Time
	size  int64
	ino   uint64
}

func stampOf(fi os.FileInfo) stamp {
	s := stamp{mtime: fi.ModTime(), size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
	}
	return s
}

// Load reads the revocation file at path; CRLs in it must be signed by one
// of the certificates in caPEM. A missing or malformed file is an error: the
// operator asked for revocation, so the gateway must not start without it.
func Load(path string, caPEM []byte) (*List, error) {
	var cas []*x509.Certificate
	for rest := caPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CA certificate: %w", err)
		}
		cas = append(cas, c)
	}
	if len(cas) == 0 {
		return nil, errors.New("CA certificate: no PEM certificate found")
	}
	l := &List{path: path, cas: cas, changed: make(chan struct{})}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("revocation file: %w", err)
	}
	set, err := l.read()
	if err != nil {
		return nil, err
	}
	l.serials.Store(&set)
	l.stamp = stampOf(fi)
	return l, nil
}

// Key is how a serial number is written in the list and in logs: lower-case
// hex without leading zeros.
func Key(serial *big.Int) string {
	if serial == nil {
		return ""
	}
	return serial.Text(16)
}

// Revoked reports whether c's serial number is on the list.
func (l *List) Revoked(c *x509.Certificate) bool {
	if l == nil || c == nil {
		return false
	}
	return (*l.serials.Load())[Key(c.SerialNumber)]
}

// Len is the number of revoked serials.
func (l *List) Len() int {
	if l == nil {
		return 0
	}
	return len(*l.serials.Load())
}

// Changed returns a channel that is closed the next time the list changes.
// A nil List never changes.
func (l *List) Changed() <-chan struct{} {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// Watch polls the file every interval until ctx is done and reloads it when
// it changes. A file that has become unreadable or malformed keeps the last
// good list in force (an error is logged), so a half-written edit never
// un-revokes anything.
func (l *List) Watch(ctx context.Context, interval time.Duration, log zerolog.Logger) {
	if l == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.poll(log)
	}
}

func (l *List) poll(log zerolog.Logger) {
	fi, err := os.Stat(l.path)
	if err != nil {
		// Log the first failure only; the stamp changes once it is back.
		if l.stamp != (stamp{}) {
			log.Error().Err(err).Str("file", l.path).Msg("revocation file unreadable; keeping the last list")
			l.stamp = stamp{}
		}
		return
	}
	st := stampOf(fi)
	if st == l.stamp {
		return
	}
	l.stamp = st
	set, err := l.read()
	if err != nil {
		log.Error().Err(err).Str("file", l.path).Msg("revocation file not reloaded; keeping the last list")
		return
	}
	l.serials.Store(&set)
	l.mu.Lock()
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
	log.Info().Str("file", l.path).Int("revoked", len(set)).Msg("revocation list reloaded")
}

func (l *List) read() (map[string]bool, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, fmt.Errorf("revocation file: %w", err)
	}
	defer f.Close()
	b, err := readLimited(f)
	if err != nil {
		return nil, fmt.Errorf("revocation file %s: %w", l.path, err)
	}
	set, err := Parse(b, l.cas)
	if err != nil {
		return nil, fmt.Errorf("revocation file %s: %w", l.path, err)
	}
	return set, nil
}

func readLimited(f *os.File) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxFileBytes)
	}
	return b, nil
}

const (
	crlBegin = "-----BEGIN X509 CRL-----"
	crlEnd   = "-----END X509 CRL-----"
)

// Parse reads a revocation file's content: blank lines and text after '#'
// are ignored; every other line is a serial number in hex (an optional 0x
// prefix and ':' separators, as openssl prints them, are allowed), or part
// of a PEM "X509 CRL" block whose signature must verify against one of cas.
// It returns the revoked serials keyed by Key.
func Parse(b []byte, cas []*x509.Certificate) (map[string]bool, error) {
	set := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), maxFileBytes)
	var block *strings.Builder
	blockStart := 0
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if block != nil {
			block.WriteString(line + "\n")
			if line == crlEnd {
				if err := addCRL(set, block.String(), cas); err != nil {
					return nil, fmt.Errorf("CRL at line %d: %w", blockStart, err)
				}
				block = nil
			}
			continue
		}
		if line == crlBegin {
			block, blockStart = &strings.Builder{}, n
			block.WriteString(line + "\n")
			continue
		}
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		s, err := parseSerial(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		set[Key(s)] = true
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if block != nil {
		return nil, fmt.Errorf("CRL at line %d: no %s line", blockStart, crlEnd)
	}
	return set, nil
}

// maxSerialHex is the longest serial accepted: RFC 5280 allows 20 octets.
const maxSerialHex = 40

func parseSerial(s string) (*big.Int, error) {
	h := strings.ReplaceAll(strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X"), ":", "")
	shown := s
	if len(shown) > 50 {
		shown = shown[:50] + "..."
	}
	if h == "" || len(h) > maxSerialHex || strings.Trim(h, "0123456789abcdefABCDEF") != "" {
		return nil, fmt.Errorf("%q is not a certificate serial number in hex (at most 20 bytes)", shown)
	}
	v, ok := new(big.Int).SetString(h, 16)
	if !ok {
		return nil, fmt.Errorf("%q is not a certificate serial number in hex", shown)
	}
	return v, nil
}

func addCRL(set map[string]bool, text string, cas []*x509.Certificate) error {
	blk, _ := pem.Decode([]byte(text))
	if blk == nil {
		return errors.New("not valid PEM")
	}
	crl, err := x509.ParseRevocationList(blk.Bytes)
	if err != nil {
		return err
	}
	var sigErr error
	for _, ca := range cas {
		if sigErr = crl.CheckSignatureFrom(ca); sigErr == nil {
			break
		}
	}
	if sigErr != nil {
		return fmt.Errorf("not signed by the CA: %w", sigErr)
	}
	// An out-of-date CRL (past NextUpdate) is used all the same: it can
	// only refuse more, never let a revoked certificate in.
	for _, e := range crl.RevokedCertificateEntries {
		set[Key(e.SerialNumber)] = true
	}
	return nil
}

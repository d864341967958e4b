package certs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"strings"
	"syscall"

	"github.com/joblet-dev/joblet/proto/atomicfile"
)

// maxSerialHex is the longest serial number: RFC 5280 allows 20 octets.
const maxSerialHex = 40

// ParseSerial reads a certificate serial number in hex, as the gateway's
// revocation file holds it: an optional 0x prefix and ':' separators (as
// openssl prints them) are allowed.
func ParseSerial(s string) (*big.Int, error) {
	h := strings.ReplaceAll(strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "0x"), "0X"), ":", "")
	v, ok := new(big.Int).SetString(h, 16)
	if h == "" || len(h) > maxSerialHex || !ok || v.Sign() < 0 || strings.ContainsAny(h, "+-_") {
		return nil, fmt.Errorf("%q is not a certificate serial number in hex (at most 20 bytes)", s)
	}
	return v, nil
}

// Revoke adds serial to the revocation file at path, the list of revoked
// client certificates the gateway re-reads while it runs
// (security.revocationFile): one line, the serial in lower-case hex and
// note as a comment. The file is replaced atomically (the gateway sees
// the old list or the new one, never half a line) keeping its mode and
// owner, and concurrent Revokes are serialised, so none is lost. A file
// that does not exist is created, mode 0644: serials are not secret.
// added is false when the serial was already listed (the file is then
// left as it was).
func Revoke(path string, serial *big.Int, note string) (added bool, err error) {
	f, err := lockFile(path)
	if err != nil {
		return false, err
	}
	defer f.Close() // releases the lock
	fi, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("revocation file: %w", err)
	}
	old, err := io.ReadAll(f)
	if err != nil {
		return false, fmt.Errorf("read revocation file %s: %w", path, err)
	}
	key := serial.Text(16)
	if listed(old, key) {
		return false, nil
	}
	var b bytes.Buffer
	b.Write(old)
	if len(old) > 0 && old[len(old)-1] != '\n' {
		b.WriteByte('\n')
	}
	b.WriteString(key)
	if note = strings.Join(strings.Fields(note), " "); note != "" {
		b.WriteString("  # " + note)
	}
	b.WriteByte('\n')
	// The new file keeps the old one's mode and owner from the moment it
	// appears: a gateway that could not read it would keep the old list.
	uid, gid := -1, -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		uid, gid = int(st.Uid), int(st.Gid)
	}
	if err := atomicfile.WriteFileOwned(path, b.Bytes(), fi.Mode().Perm(), uid, gid); err != nil {
		return false, fmt.Errorf("revocation file: %w", err)
	}
	return true, nil
}

// lockFile opens path (creating it empty if missing) and takes an
// exclusive lock on it. A Revoke that replaced the file while this one
// waited leaves the lock on an unlinked inode, so the lock is taken again
// on the file now at path.
func lockFile(path string) (*os.File, error) {
	for {
		f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("revocation file: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock revocation file %s: %w", path, err)
		}
		held, err1 := f.Stat()
		now, err2 := os.Stat(path)
		if err := errors.Join(err1, err2); err != nil && !errors.Is(err2, fs.ErrNotExist) {
			f.Close()
			return nil, fmt.Errorf("revocation file: %w", err)
		}
		if err2 == nil && os.SameFile(held, now) {
			return f, nil
		}
		f.Close()
	}
}

// listed reports whether the file content b lists the serial key.
func listed(b []byte, key string) bool {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), len(b)+1)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if s, err := ParseSerial(line); err == nil && s.Text(16) == key {
			return true
		}
	}
	return false
}

package client

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/joblet-dev/joblet/proto/clientconfig"
)

// rnx is a new process for every command, so Go's in-memory session cache
// would never resume anything: each command would pay a full TLS 1.3
// handshake (both certificates sent and checked, both sides signing). The
// SessionCache keeps the latest session ticket of each node in a file, so
// the next command resumes it: no certificate or signature in the
// handshake, the key exchange alone. The gateway checks a resumed session
// as it checks a new one (revocation, the client certificate's validity and
// roles), and accepts it for at most an hour after the full handshake.
//
// What the file holds (a resumption secret and its ticket) lets whoever
// reads it connect as the client until then: it is written 0600 in a 0700
// directory, like the key in the config. A missing, unreadable, corrupt or
// stale file only means a full handshake; writing it may fail silently.

// sessionMagic starts the file; another version of the format is ignored.
const sessionMagic = "rnx-tls-sessions 1\n"

// maxSessions is how many sessions (nodes and identities) the file keeps,
// the most recently saved first.
const maxSessions = 8

// maxSessionFile bounds what is read: a session is 1-3 KiB.
const maxSessionFile = 256 << 10

// SessionCache is a tls.ClientSessionCache kept in a file, for one node.
// The file is read in the background from NewSessionCache on; Get waits
// for it. Put writes the file in the background; Flush waits for that.
type SessionCache struct {
	path string
	node [32]byte // the node's address, client certificate and CA

	loaded  chan struct{}
	mu      sync.Mutex
	saved   []sessionEntry // the file's sessions, once loaded; guarded by mu
	resumed bool           // the latest handshake resumed a session; guarded by mu
	flushed bool           // Flush was called: no more writes; guarded by mu
	// ready is the node's session as crypto/tls takes it, parsed while
	// the file is read, for the first Get; guarded by mu.
	ready    *tls.ClientSessionState
	readyKey [32]byte

	saveMu sync.Mutex // one write of the file at a time
	writes sync.WaitGroup
}

// sessionEntry is one session in the file.
type sessionEntry struct {
	key    [32]byte // the node, and crypto/tls's key for the server
	ticket []byte
	state  []byte // tls.SessionState.Bytes
}

// NewSessionCache returns the cache of node's sessions in the file at path
// and starts reading it.
func NewSessionCache(path string, node *clientconfig.Node) *SessionCache {
	h := sha256.New()
	for _, s := range []string{"rnx tls session", node.Address, node.Cert, node.CA} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	c := &SessionCache{path: path, loaded: make(chan struct{})}
	h.Sum(c.node[:0])
	// crypto/tls looks a session up by the config's ServerName, which Dial
	// sets to the address's host: the session the handshake will ask for
	// is parsed here, in the background, instead of in the handshake
	// (its certificates: ~0.1 ms on the way to the gateway).
	host, _, _ := net.SplitHostPort(node.Address)
	go func() {
		entries := readSessions(path)
		k := c.key(host)
		var ready *tls.ClientSessionState
		for i := range entries {
			if entries[i].key == k {
				ready = entries[i].resumption()
				break
			}
		}
		c.mu.Lock()
		c.saved = entries
		c.ready, c.readyKey = ready, k
		c.mu.Unlock()
		close(c.loaded)
	}()
	return c
}

// key is the entry key of crypto/tls's session key (the server name) for
// this node.
func (c *SessionCache) key(sessionKey string) [32]byte {
	return sha256.Sum256(append(c.node[:], sessionKey...))
}

// Get implements tls.ClientSessionCache.
func (c *SessionCache) Get(sessionKey string) (*tls.ClientSessionState, bool) {
	<-c.loaded
	k := c.key(sessionKey)
	c.mu.Lock()
	if cs := c.ready; cs != nil && c.readyKey == k {
		c.ready = nil // a later handshake (a reconnect) parses afresh
		c.mu.Unlock()
		return cs, true
	}
	var e *sessionEntry
	for i := range c.saved {
		if c.saved[i].key == k {
			e = &c.saved[i]
			break
		}
	}
	c.mu.Unlock()
	if e == nil {
		return nil, false
	}
	cs := e.resumption()
	return cs, cs != nil
}

// resumption is the entry's session as crypto/tls takes it; nil if the
// entry does not parse.
func (e *sessionEntry) resumption() *tls.ClientSessionState {
	state, err := tls.ParseSessionState(e.state)
	if err != nil {
		return nil
	}
	cs, err := tls.NewResumptionState(e.ticket, state)
	if err != nil {
		return nil
	}
	return cs
}

// handshook records whether the connection's handshake resumed a session.
func (c *SessionCache) handshook(resumed bool) {
	c.mu.Lock()
	c.resumed = resumed
	c.mu.Unlock()
}

// Put implements tls.ClientSessionCache: cs (nil: forget the session)
// replaces what the file held for the node, and the file is rewritten in
// the background. After a resumed handshake the file is left as it is: the
// gateway dates the new ticket from the same full handshake as the one
// resumed (tlsconf.SessionLifetime), so the saved ticket is as good, and
// the common case, a command resuming, writes nothing.
func (c *SessionCache) Put(sessionKey string, cs *tls.ClientSessionState) {
	<-c.loaded
	c.mu.Lock()
	keep := c.resumed && cs != nil
	c.mu.Unlock()
	if keep {
		return
	}
	var fresh *sessionEntry
	if cs != nil {
		ticket, state, err := cs.ResumptionState()
		if err != nil || ticket == nil {
			return
		}
		b, err := state.Bytes()
		if err != nil {
			return
		}
		fresh = &sessionEntry{ticket: ticket, state: b}
	}
	k := c.key(sessionKey)
	c.mu.Lock()
	c.ready = nil // what the file held for the node is replaced
	entries := make([]sessionEntry, 0, maxSessions)
	if fresh != nil {
		fresh.key = k
		entries = append(entries, *fresh)
	}
	for _, e := range c.saved {
		if e.key != k && len(entries) < maxSessions {
			entries = append(entries, e)
		}
	}
	changed := fresh != nil || len(entries) != len(c.saved)
	c.saved = entries
	// Added under mu, so that a write is either started before Flush
	// waits, or not at all (a ticket read while the connection closes).
	write := changed && !c.flushed
	if write {
		c.writes.Add(1)
	}
	c.mu.Unlock()
	if !write {
		return
	}
	go func() {
		defer c.writes.Done()
		c.save()
	}()
}

// Flush waits until what Put changed is written; later changes are not.
func (c *SessionCache) Flush() {
	c.mu.Lock()
	c.flushed = true
	c.mu.Unlock()
	c.writes.Wait()
}

// save writes the sessions as they are now: a later Put's save, waiting
// for this one, writes its own change too.
func (c *SessionCache) save() {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	c.mu.Lock()
	b := encodeSessions(c.saved)
	c.mu.Unlock()
	// Errors are ignored: without the file the next command makes a full
	// handshake, which is all a cache may cost.
	_ = writeSessionFile(c.path, b)
}

// writeSessionFile replaces path with b: a temporary file (0600) renamed
// to path, so a reader sees a whole file, or none. No fsync: a file lost
// in a crash costs one full handshake. The old file is removed before the
// rename: ext4 flushes the new file's data when a rename replaces one
// (auto_da_alloc), which took 0.25 ms at the median and up to 30 ms under
// load here, against 0.04 ms for a remove and a rename; a reader between
// the two finds no file and makes a full handshake.
func writeSessionFile(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // a no-op once renamed
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// Unlink, not os.Remove: a directory in the file's place stays.
	if err := syscall.Unlink(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.Rename(f.Name(), path)
}

// readSessions returns the sessions in the file at path; none if it is
// missing, unreadable or not in the format.
func readSessions(path string) []sessionEntry {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	// In one read where the size allows (io.ReadAll grows its buffer
	// from 512 bytes, a read each time).
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > maxSessionFile {
		return nil
	}
	b := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil
	}
	entries, err := decodeSessions(b)
	if err != nil {
		return nil
	}
	return entries
}

// encodeSessions is the file's format: the magic line, then for each
// session its key (32 bytes), and its ticket and state, each preceded by
// its length (uvarint).
func encodeSessions(entries []sessionEntry) []byte {
	b := []byte(sessionMagic)
	for _, e := range entries {
		b = append(b, e.key[:]...)
		b = binary.AppendUvarint(b, uint64(len(e.ticket)))
		b = append(b, e.ticket...)
		b = binary.AppendUvarint(b, uint64(len(e.state)))
		b = append(b, e.state...)
	}
	return b
}

var errSessionFormat = errors.New("not an rnx TLS session file")

// decodeSessions reads what encodeSessions wrote.
func decodeSessions(b []byte) ([]sessionEntry, error) {
	rest, ok := bytes.CutPrefix(b, []byte(sessionMagic))
	if !ok {
		return nil, errSessionFormat
	}
	field := func() ([]byte, bool) {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return nil, false
		}
		f := rest[w : w+int(n)]
		rest = rest[w+int(n):]
		return f, true
	}
	var entries []sessionEntry
	for len(rest) > 0 && len(entries) < maxSessions {
		if len(rest) < 32 {
			return nil, errSessionFormat
		}
		var e sessionEntry
		copy(e.key[:], rest)
		rest = rest[32:]
		var ok1, ok2 bool
		e.ticket, ok1 = field()
		e.state, ok2 = field()
		if !ok1 || !ok2 {
			return nil, errSessionFormat
		}
		entries = append(entries, e)
	}
	return entries, nil
}

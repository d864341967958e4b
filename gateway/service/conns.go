package service

import (
	"container/list"
	"net"
	"sync"

	"github.com/rs/zerolog"
)

// connLimiter caps the gateway's open connections without letting idle
// ones lock out real clients. Every connection is accepted at once and
// counts against the cap; while it has not finished its TLS handshake (a
// client certificate checked) it is "pending". When the cap is reached and
// a connection arrives, the pending connection that has waited longest is
// closed to make room: a flood of connections that never handshake (5,000
// idle TCP connections) cycles through the pending slots, each closed
// within microseconds of the next arriving, while a real client, whose
// handshake takes milliseconds, gets through. Only when every slot is held
// by a handshaken client does Accept wait for one to close, as
// netutil.LimitListener does. The handshake timeout still closes pending
// connections when nothing pushes them out.
type connLimiter struct {
	net.Listener
	max int
	log zerolog.Logger

	mu      sync.Mutex
	freed   *sync.Cond // signalled when a slot frees or the listener closes
	pending list.List  // *trackedConn not yet handshaken, oldest first
	open    int
	closed  bool
}

func limitConns(l net.Listener, max int, log zerolog.Logger) *connLimiter {
	cl := &connLimiter{Listener: l, max: max, log: log}
	cl.freed = sync.NewCond(&cl.mu)
	return cl
}

// Accept implements net.Listener.
func (l *connLimiter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.open >= l.max && !l.closed {
		if e := l.pending.Front(); e != nil {
			old := e.Value.(*trackedConn)
			l.releaseLocked(old)
			old.Conn.Close()
			l.log.Debug().Str("peer_addr", old.RemoteAddr().String()).
				Msg("closed a connection still in its handshake to make room for a new one")
			continue
		}
		l.freed.Wait()
	}
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, l: l}
	tc.elem = l.pending.PushBack(tc)
	l.open++
	return tc, nil
}

// Close implements net.Listener; an Accept waiting for a slot returns.
func (l *connLimiter) Close() error {
	l.mu.Lock()
	l.closed = true
	l.freed.Broadcast()
	l.mu.Unlock()
	return l.Listener.Close()
}

// releaseLocked gives back c's slot, once; l.mu is held.
func (l *connLimiter) releaseLocked(c *trackedConn) {
	if c.released {
		return
	}
	c.released = true
	if c.elem != nil {
		l.pending.Remove(c.elem)
		c.elem = nil
	}
	l.open--
	l.freed.Signal()
}

// trackedConn is a connection holding one of the limiter's slots.
type trackedConn struct {
	net.Conn
	l        *connLimiter
	elem     *list.Element // in l.pending while handshaking; guarded by l.mu
	released bool          // guarded by l.mu
}

// handshaken takes c off the pending list: its client proved who it is,
// and it is no longer the first to go when room is needed.
func (c *trackedConn) handshaken() {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	if c.elem != nil {
		c.l.pending.Remove(c.elem)
		c.elem = nil
	}
}

// Close implements net.Conn and frees the slot.
func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	c.l.releaseLocked(c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

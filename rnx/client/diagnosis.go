package client

import (
	"context"
	"errors"
	"net"
	"sync"

	"google.golang.org/grpc/credentials"
)

// diagnosis remembers why the transport last failed (dial, handshake, or an
// alert from the server after the handshake). gRPC folds these into a long
// Unavailable message; keeping the typed error lets Explain say what is
// wrong without parsing that text.
type diagnosis struct {
	mu        sync.Mutex
	err       error
	connected bool // a handshake has succeeded
}

// set records err as the transport's state; nil means the step succeeded.
func (d *diagnosis) set(err error) {
	d.mu.Lock()
	d.err = err
	d.mu.Unlock()
}

func (d *diagnosis) get() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// recordingCreds is TLS transport credentials that report to a diagnosis.
type recordingCreds struct {
	credentials.TransportCredentials
	diag     *diagnosis
	sessions *SessionCache // told whether each handshake resumed; may be nil
}

func (c *recordingCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	c.diag.set(err)
	if err != nil {
		return nil, nil, err
	}
	c.diag.mu.Lock()
	c.diag.connected = true
	c.diag.mu.Unlock()
	if tlsInfo, ok := info.(credentials.TLSInfo); ok && c.sessions != nil {
		c.sessions.handshook(tlsInfo.State.DidResume)
	}
	return &alertConn{Conn: conn, diag: c.diag}, info, nil
}

func (c *recordingCreds) Clone() credentials.TransportCredentials {
	return &recordingCreds{TransportCredentials: c.TransportCredentials.Clone(), diag: c.diag, sessions: c.sessions}
}

// alertConn notices a server that drops the connection right after the
// handshake. With TLS 1.3 the client finishes its handshake before the
// server has checked the client certificate, so a refused certificate shows
// up afterwards: as an alert on the first read, or, if the server has
// already closed the socket, as a failed write.
type alertConn struct {
	net.Conn
	diag *diagnosis
	mu   sync.Mutex
	live bool // the server has sent application data
}

func (c *alertConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.note(n, err)
	return n, err
}

func (c *alertConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.note(0, err)
	return n, err
}

func (c *alertConn) note(n int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case n > 0:
		c.live = true
	case err == nil || errors.Is(err, net.ErrClosed): // closed by us
	case !c.live || isRemoteAlert(err):
		c.diag.set(&refusedError{err})
	default:
		c.diag.set(&lostError{err})
	}
}

// lostError is a working connection that broke, as when the gateway
// restarts.
type lostError struct{ err error }

func (e *lostError) Error() string { return e.err.Error() }
func (e *lostError) Unwrap() error { return e.err }

// refusedError is a connection the server ended after the handshake and
// before serving anything.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// isRemoteAlert reports whether err is a TLS alert from the peer; crypto/tls
// reports those as a net.OpError with Op "remote error".
func isRemoteAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}

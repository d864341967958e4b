package client

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/joblet-dev/joblet/proto/clientconfig"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// handshakeSeen waits up to d for the server's next handshake and
// reports whether one came and whether it resumed a session.
func (s *resumeServer) handshakeSeen(d time.Duration) (seen, resumed bool) {
	select {
	case r := <-s.resumed:
		return true, r
	case <-time.After(d):
		return false, false
	}
}

// TestDialConnectsAtOnce: Dial starts the TCP and TLS handshakes itself,
// before any call, so they run while the command prepares its first
// request.
func TestDialConnectsAtOnce(t *testing.T) {
	s := newResumeServer(t)
	conn, err := Dial(s.node(t, "alice"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if seen, _ := s.handshakeSeen(10 * time.Second); !seen {
		t.Fatal("no handshake reached the server without a call")
	}
}

// TestDialRefusesBadKeyPair: the key pair parsed in the background is
// still waited for by Dial, which fails as TLSConfig does; with a session
// that the server would resume, too.
func TestDialRefusesBadKeyPair(t *testing.T) {
	s := newResumeServer(t)
	file := filepath.Join(t.TempDir(), "tls-sessions")
	good := s.node(t, "alice")
	s.command(t, good, file) // a session to resume
	for name, edit := range map[string]func(n *clientconfig.Node){
		"bad cert": func(n *clientconfig.Node) { n.Cert = "junk" },
		"bad key":  func(n *clientconfig.Node) { n.Key = n.CA },
	} {
		n := *good
		edit(&n)
		conn, err := Dial(&n, file)
		if err == nil {
			conn.Close()
			t.Fatalf("%s: Dial succeeded", name)
		}
		if !strings.Contains(err.Error(), "client certificate and key in the config") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestLeaveSavesSession: Leave, used by a process about to exit instead of
// Close, still waits for the session file a full handshake writes, and
// the next command resumes from it.
func TestLeaveSavesSession(t *testing.T) {
	s := newResumeServer(t)
	alice := s.node(t, "alice")
	file := filepath.Join(t.TempDir(), "tls-sessions")
	conn, err := Dial(alice, file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := conn.GetJobStatus(ctx, &jobletv1.GetJobStatusRequest{Id: "1"}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("call: %v, want Unimplemented from the server", err)
	}
	if _, resumed := s.handshakeSeen(time.Second); resumed {
		t.Fatal("first handshake resumed")
	}
	conn.Leave()
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("no session file after Leave: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	if n := s.conns.open.Load(); n != 1 {
		t.Fatalf("%d connections open after Leave, want the one left open", n)
	}
	conn.Close()
	for deadline := time.Now().Add(10 * time.Second); s.conns.open.Load() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the connection did not end after Close")
		}
	}
	if !s.command(t, alice, file) {
		t.Fatal("the next command did not resume the session Leave waited for")
	}
}

// TestSessionParsedAhead: the node's session is parsed while the file is
// read, and handed to the first handshake; a second handshake of the same
// process (a reconnect) gets it too, parsed then, and another server name
// gets none.
func TestSessionParsedAhead(t *testing.T) {
	s := newResumeServer(t)
	alice := s.node(t, "alice")
	file := filepath.Join(t.TempDir(), "tls-sessions")
	s.command(t, alice, file)

	c := NewSessionCache(file, alice)
	<-c.loaded
	c.mu.Lock()
	ready := c.ready
	c.mu.Unlock()
	if ready == nil {
		t.Fatal("the node's session was not parsed with the file")
	}
	first, ok := c.Get("127.0.0.1")
	if !ok || first != ready {
		t.Fatalf("first Get = %v, %v; want the session parsed ahead", first, ok)
	}
	second, ok := c.Get("127.0.0.1")
	if !ok || second == nil || second == first {
		t.Fatalf("second Get = %v, %v; want the session parsed again", second, ok)
	}
	if _, ok := c.Get("localhost"); ok {
		t.Fatal("a session for another server name")
	}
}

// connCounter is a stats.Handler that counts the server's open
// connections.
type connCounter struct{ open atomic.Int32 }

func (c *connCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (c *connCounter) HandleRPC(context.Context, stats.RPCStats)                       {}
func (c *connCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (c *connCounter) HandleConn(_ context.Context, s stats.ConnStats) {
	switch s.(type) {
	case *stats.ConnBegin:
		c.open.Add(1)
	case *stats.ConnEnd:
		c.open.Add(-1)
	}
}

package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/joblet-dev/joblet/deploy/certs"
	"github.com/joblet-dev/joblet/proto/clientconfig"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// resumeServer is a gRPC server with no services over mutual TLS 1.3 that
// reports, for each handshake, whether it resumed a session.
type resumeServer struct {
	ca      *certs.CA
	addr    string
	resumed chan bool
	keys    *tls.Config // seals the tickets: SetSessionTicketKeys changes them
	conns   connCounter
}

func newResumeServer(t *testing.T) *resumeServer {
	t.Helper()
	ca, err := certs.NewCA("session test CA")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Server("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	s := &resumeServer{ca: ca, resumed: make(chan bool, 16), keys: &tls.Config{}}
	// gRPC copies the config: the tickets are sealed through s.keys, which
	// the test keeps.
	conf := &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
		VerifyConnection: func(cs tls.ConnectionState) error {
			s.resumed <- cs.DidResume
			return nil
		},
		WrapSession: func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
			return s.keys.EncryptTicket(cs, ss)
		},
		UnwrapSession: func(id []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
			return s.keys.DecryptTicket(id, cs)
		},
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = lis.Addr().String()
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(conf)), grpc.StatsHandler(&s.conns))
	go srv.Serve(lis) //nolint:errcheck // ends with Stop
	t.Cleanup(srv.Stop)
	return s
}

// node is a client identity of the server's CA.
func (s *resumeServer) node(t *testing.T, cn string) *clientconfig.Node {
	t.Helper()
	p, err := s.ca.Client(cn, certs.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	return &clientconfig.Node{Address: s.addr, Cert: string(p.CertPEM), Key: string(p.KeyPEM), CA: string(s.ca.CertPEM)}
}

// command does what one rnx command does: dial with the session file, one
// call (the server has no services: Unimplemented, after the handshake),
// close. It returns whether the server resumed the session.
func (s *resumeServer) command(t *testing.T, node *clientconfig.Node, file string) bool {
	t.Helper()
	conn, err := Dial(node, file)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = conn.GetJobStatus(ctx, &jobletv1.GetJobStatusRequest{Id: "1"})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("call: %v, want Unimplemented from the server", err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-s.resumed:
		return r
	default:
		t.Fatal("the server saw no handshake")
		return false
	}
}

// TestSessionResumedByTheNextCommand: the first command makes a full
// handshake and saves its session (0600, in a 0700 directory it creates);
// the next, a new cache as in a new process, resumes it. Another identity
// on the same server is not given that session, and both are kept.
func TestSessionResumedByTheNextCommand(t *testing.T) {
	s := newResumeServer(t)
	file := filepath.Join(t.TempDir(), "cache", "rnx", "tls-sessions")
	alice, bob := s.node(t, "alice"), s.node(t, "bob")

	if s.command(t, alice, file) {
		t.Fatal("first command resumed a session")
	}
	for path, want := range map[string]os.FileMode{file: 0o600, filepath.Dir(file): 0o700 | os.ModeDir} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}
	ino := inode(t, file)
	if !s.command(t, alice, file) {
		t.Fatal("second command did not resume")
	}
	if inode(t, file) != ino {
		t.Fatal("a resumed command rewrote the file")
	}
	if s.command(t, bob, file) {
		t.Fatal("another identity resumed alice's session")
	}
	if inode(t, file) == ino {
		t.Fatal("a full handshake's session was not saved")
	}
	if !s.command(t, alice, file) || !s.command(t, bob, file) {
		t.Fatal("the file lost one of the two identities' sessions")
	}
	if s.command(t, alice, "") {
		t.Fatal("resumed without a session file")
	}
}

// inode is path's inode number: a rewrite (a new file renamed in) changes it.
func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// TestBadSessionFileIgnored: a corrupt file, a directory in the file's
// place, and a ticket the server no longer accepts (as after its restart)
// each mean a full handshake and no error; a writable file is then
// replaced by a good one.
func TestBadSessionFileIgnored(t *testing.T) {
	s := newResumeServer(t)
	alice := s.node(t, "alice")
	file := filepath.Join(t.TempDir(), "tls-sessions")

	for _, junk := range [][]byte{[]byte("garbage"), []byte(sessionMagic + "short"), append([]byte(sessionMagic), make([]byte, 40)...)} {
		if err := os.WriteFile(file, junk, 0o600); err != nil {
			t.Fatal(err)
		}
		if s.command(t, alice, file) {
			t.Fatalf("resumed from %q", junk)
		}
		if !s.command(t, alice, file) {
			t.Fatalf("the file was not replaced after %q", junk)
		}
	}

	// The server forgets its ticket keys: the saved ticket is refused.
	s.keys.SetSessionTicketKeys([][32]byte{{1, 2, 3}})
	if s.command(t, alice, file) {
		t.Fatal("resumed with a ticket sealed by keys the server dropped")
	}
	if !s.command(t, alice, file) {
		t.Fatal("the new ticket was not saved")
	}

	dir := filepath.Join(t.TempDir(), "a-directory")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if s.command(t, alice, dir) || s.command(t, alice, dir) {
		t.Fatal("resumed with a directory as the session file")
	}
}

// FuzzDecodeSessions: any file content decodes or is refused, without a
// panic, and what decodes encodes back to the same bytes.
func FuzzDecodeSessions(f *testing.F) {
	f.Add([]byte(sessionMagic))
	f.Add(encodeSessions([]sessionEntry{{key: [32]byte{1}, ticket: []byte("t"), state: []byte("s")}}))
	f.Add([]byte(sessionMagic + "\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := decodeSessions(b)
		if err != nil || len(entries) == maxSessions {
			return
		}
		if got := encodeSessions(entries); string(got) != string(b) {
			t.Fatalf("decode/encode changed %q into %q", b, got)
		}
	})
}

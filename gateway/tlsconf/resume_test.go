package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/deploy/certs"
	"github.com/joblet-dev/joblet/proto/config"
)

// revoked is a Revoker the test changes between handshakes.
type revoked struct {
	mu  sync.Mutex
	cns map[string]bool
}

func (r *revoked) Revoked(c *x509.Certificate) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cns[c.Subject.CommonName]
}

func (r *revoked) set(cn string, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cns[cn] = on
}

// offeredCache is a client session cache that counts the sessions it hands
// to the client, so a test knows a ticket was offered.
type offeredCache struct {
	tls.ClientSessionCache
	mu      sync.Mutex
	offered int
}

func (c *offeredCache) Get(key string) (*tls.ClientSessionState, bool) {
	cs, ok := c.ClientSessionCache.Get(key)
	if ok && cs != nil {
		c.mu.Lock()
		c.offered++
		c.mu.Unlock()
	}
	return cs, ok
}

func (c *offeredCache) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offered
}

// resumeSetup is a server config with a clock the test moves, and a client
// config with a session cache.
type resumeSetup struct {
	srv   *tls.Config
	cli   *tls.Config
	cache *offeredCache
	rev   *revoked
	clock time.Time
}

func newResumeSetup(t testing.TB) *resumeSetup {
	t.Helper()
	ca, err := certs.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	srvPair, err := ca.Server("localhost")
	if err != nil {
		t.Fatal(err)
	}
	cliPair, err := ca.Client("alice", certs.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	s := &resumeSetup{rev: &revoked{cns: map[string]bool{}}, clock: time.Now()}
	sec := config.Security{ServerCert: string(srvPair.CertPEM), ServerKey: string(srvPair.KeyPEM), CACert: string(ca.CertPEM)}
	if s.srv, err = Server(sec, s.rev); err != nil {
		t.Fatal(err)
	}
	s.srv.Time = func() time.Time { return s.clock }
	cert, err := tls.X509KeyPair(cliPair.CertPEM, cliPair.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)
	s.cache = &offeredCache{ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	s.cli = &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: roots,
		ServerName: "localhost", ClientSessionCache: s.cache,
		Time: func() time.Time { return s.clock },
	}
	return s
}

// handshake connects once. The server sends a byte after its handshake, so
// that the client, reading it, also takes in the session ticket sent before
// it. It returns whether the session was resumed, the client certificate's
// CN as the server saw it, and the server's handshake error.
func (s *resumeSetup) handshake(t testing.TB) (resumed bool, peerCN string, srvErr error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type result struct {
		state tls.ConnectionState
		err   error
	}
	done := make(chan result, 1)
	go func() {
		sc, err := l.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer sc.Close()
		srv := tls.Server(sc, s.srv)
		if err := srv.Handshake(); err != nil {
			done <- result{err: err}
			return
		}
		_, err = srv.Write([]byte{1})
		done <- result{state: srv.ConnectionState(), err: err}
		var b [1]byte
		_, _ = srv.Read(b[:]) // until the client closes
	}()
	cc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cli := tls.Client(cc, s.cli)
	var b [1]byte
	_, cliErr := cli.Read(b[:])
	r := <-done
	cli.Close()
	if r.err != nil {
		if cliErr == nil {
			t.Fatalf("server refused (%v) but the client read on", r.err)
		}
		return false, "", r.err
	}
	if cliErr != nil {
		t.Fatalf("client: %v", cliErr)
	}
	if got := cli.ConnectionState().DidResume; got != r.state.DidResume {
		t.Fatalf("client says resumed=%v, server %v", got, r.state.DidResume)
	}
	return r.state.DidResume, r.state.PeerCertificates[0].Subject.CommonName, nil
}

// TestResumedSessionStillChecked: a session is resumed with the client's
// certificate known to the server, a certificate revoked after its ticket
// was issued is refused although the client offers the ticket, and is let
// in again by resumption once unrevoked.
func TestResumedSessionStillChecked(t *testing.T) {
	s := newResumeSetup(t)
	if resumed, cn, err := s.handshake(t); err != nil || resumed || cn != "alice" {
		t.Fatalf("first handshake: resumed=%v cn=%q err=%v, want a full one as alice", resumed, cn, err)
	}
	if resumed, cn, err := s.handshake(t); err != nil || !resumed || cn != "alice" {
		t.Fatalf("second handshake: resumed=%v cn=%q err=%v, want resumed as alice", resumed, cn, err)
	}

	s.rev.set("alice", true)
	offered := s.cache.count()
	_, _, err := s.handshake(t)
	if err == nil || !strings.Contains(err.Error(), `client certificate "alice"`) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked certificate with a ticket: %v, want refused as revoked", err)
	}
	if s.cache.count() != offered+1 {
		t.Fatalf("the client offered no ticket: the refusal proves nothing about resumption")
	}

	s.rev.set("alice", false)
	if resumed, _, err := s.handshake(t); err != nil || !resumed {
		t.Fatalf("unrevoked: resumed=%v err=%v, want the same ticket accepted", resumed, err)
	}
}

// TestSessionLifetimeBounded: resumed connections hand out new tickets, but
// none extends the session past SessionLifetime after the full handshake;
// then a full handshake is made, and its session may be resumed again.
func TestSessionLifetimeBounded(t *testing.T) {
	s := newResumeSetup(t)
	start := s.clock
	if resumed, _, err := s.handshake(t); err != nil || resumed {
		t.Fatalf("first: resumed=%v err=%v", resumed, err)
	}
	for _, step := range []struct {
		after time.Duration
		want  bool
	}{
		{SessionLifetime / 2, true},
		{SessionLifetime - time.Minute, true}, // with the ticket of the step before
		{SessionLifetime + time.Minute, false},
		{SessionLifetime + 2*time.Minute, true}, // the new full handshake's
	} {
		s.clock = start.Add(step.after)
		resumed, _, err := s.handshake(t)
		if err != nil || resumed != step.want {
			t.Fatalf("%v after the first handshake: resumed=%v err=%v, want resumed=%v", step.after, resumed, err, step.want)
		}
	}
}

// TestTicketWithoutAuthTimeRefused: a ticket sealed with the server's keys
// but without the time of its full handshake (as a gateway before the bound
// issued them) is not resumed.
func TestTicketWithoutAuthTimeRefused(t *testing.T) {
	s := newResumeSetup(t)
	plain := s.srv.Clone()
	plain.GetConfigForClient = nil // Go's own tickets, sealed with the same keys
	bound := s.srv
	s.srv = plain
	if _, _, err := s.handshake(t); err != nil {
		t.Fatal(err)
	}
	s.srv = bound
	if resumed, _, err := s.handshake(t); err != nil || resumed {
		t.Fatalf("ticket without auth time: resumed=%v err=%v, want a full handshake", resumed, err)
	}
}

// BenchmarkHandshake: one mutual TLS 1.3 handshake between the gateway's
// config and a client like rnx's, both sides in this process, full (no
// session) and resumed (a session saved from the first). cpu-ns/op is the
// process's CPU time (both sides) per handshake, less sensitive to the
// machine's load than ns/op.
func BenchmarkHandshake(b *testing.B) {
	for _, resume := range []bool{false, true} {
		name := "full"
		if resume {
			name = "resumed"
		}
		b.Run(name, func(b *testing.B) {
			s := newResumeSetup(b)
			if !resume {
				s.cli.ClientSessionCache = nil
			}
			s.handshake(b) // the session to resume
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			n := 0
			for b.Loop() {
				resumed, _, err := s.handshake(b)
				if err != nil || resumed != resume {
					b.Fatalf("resumed=%v err=%v", resumed, err)
				}
				n++
			}
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/op")
		})
	}
}

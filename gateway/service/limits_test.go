package service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/joblet-dev/joblet/deploy/certs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/logdapi"
)

// smallLimits are DefaultLimits with the one under test changed.
func smallLimits(mod func(*Limits)) Option {
	l := DefaultLimits()
	mod(&l)
	return WithLimits(l)
}

// listJobs is one quick call that must work for a well-behaved client.
func listJobs(t *testing.T, c jobletv1.JobServiceClient, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, err := c.ListJobs(ctx, &jobletv1.ListJobsRequest{})
	return err
}

// tlsDial opens a raw TLS connection to the gateway with an admin
// certificate, offering HTTP/2 as gRPC does.
func (g *gateway) tlsDial(t *testing.T) *tls.Conn {
	t.Helper()
	p := g.pair(t, "raw", certs.RoleAdmin)
	c, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(g.ca.CertPEM)
	conn, err := tls.Dial("tcp", g.addr, &tls.Config{
		RootCAs: pool, Certificates: []tls.Certificate{c}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS13,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestConnectionCap fills the gateway's connection cap: the next client
// waits rather than being served, and gets in as soon as one closes.
func TestConnectionCap(t *testing.T) {
	g := startGateway(t, smallLimits(func(l *Limits) { l.MaxConnections = 2 }))
	a := g.conn(t, g.pair(t, "a", certs.RoleAdmin))
	b := g.client(t, "b", certs.RoleAdmin)
	for _, c := range []jobletv1.JobServiceClient{jobletv1.NewJobServiceClient(a), b} {
		if err := listJobs(t, c, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	third := g.client(t, "c", certs.RoleViewer)
	if err := listJobs(t, third, 700*time.Millisecond); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("third connection over a cap of 2: %v, want it to wait (DeadlineExceeded)", err)
	}
	a.Close()
	if err := listJobs(t, third, 10*time.Second); err != nil {
		t.Fatalf("third connection after one closed: %v", err)
	}
	if err := listJobs(t, b, 5*time.Second); err != nil {
		t.Fatalf("an established connection: %v", err)
	}
}

// TestHandshakeTimeout: a TCP connection that never sends a ClientHello,
// and a TLS connection that never starts HTTP/2, are both closed after the
// handshake timeout, and other clients are served meanwhile.
func TestHandshakeTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	g := startGateway(t, smallLimits(func(l *Limits) { l.HandshakeTimeout = timeout }))

	silent, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	tlsOnly := g.tlsDial(t) // the TLS handshake is done; no HTTP/2 preface follows
	start := time.Now()
	if err := listJobs(t, g.client(t, "alice", certs.RoleAdmin), 5*time.Second); err != nil {
		t.Fatalf("a normal client beside silent ones: %v", err)
	}

	for name, c := range map[string]net.Conn{"silent TCP": silent, "TLS without HTTP/2": tlsOnly} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: still open after 5s", name)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("closed only after %v with a %v handshake timeout", d, timeout)
	}
}

// TestKeepaliveEnforcement pings the gateway far more often than it allows,
// over a raw HTTP/2 connection (gRPC's own client will not ping that
// often): the gateway answers GOAWAY too_many_pings and stays healthy.
func TestKeepaliveEnforcement(t *testing.T) {
	g := startGateway(t)
	conn := g.tlsDial(t)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var writing sync.Mutex // a Framer's writes are not safe for concurrent use
	pinging := make(chan struct{})
	go func() {
		defer close(pinging)
		for i := range 10 {
			writing.Lock()
			err := fr.WritePing(false, [8]byte{byte(i)})
			writing.Unlock()
			if err != nil {
				return // the gateway hung up, as it should
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	var goAway *http2.GoAwayFrame
	for goAway == nil {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no GOAWAY before the connection ended: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				writing.Lock()
				fr.WriteSettingsAck()
				writing.Unlock()
			}
		case *http2.GoAwayFrame:
			goAway = f
		}
	}
	<-pinging
	if goAway.ErrCode != http2.ErrCodeEnhanceYourCalm || string(goAway.DebugData()) != "too_many_pings" {
		t.Fatalf("GOAWAY %v %q, want ENHANCE_YOUR_CALM too_many_pings", goAway.ErrCode, goAway.DebugData())
	}
	if err := listJobs(t, g.client(t, "alice", certs.RoleAdmin), 5*time.Second); err != nil {
		t.Fatalf("gateway after a ping flood: %v", err)
	}
}

// countingLogd counts the log reads in progress, i.e. the streams the
// gateway is serving at once.
type countingLogd struct {
	logdapi.Logd
	cur, max atomic.Int32
}

func (c *countingLogd) Read(ctx context.Context, id string, off int64, follow bool, fn func(logdapi.Record) error) error {
	n := c.cur.Add(1)
	defer c.cur.Add(-1)
	for m := c.max.Load(); n > m && !c.max.CompareAndSwap(m, n); m = c.max.Load() {
	}
	return c.Logd.Read(ctx, id, off, follow, fn)
}

// TestStreamBurst opens 200 log followers at once on one connection while
// another client works normally. With the stream cap lowered to 32, the
// gateway never serves more than 32 of them at a time.
func TestStreamBurst(t *testing.T) {
	for _, tc := range []struct {
		name string
		cap  uint32
	}{{"default cap", DefaultLimits().MaxConcurrentStreams}, {"cap 32", 32}} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t)
			logd := &countingLogd{Logd: g.logd}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			g.addr = l.Addr().String()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- Serve(ctx, l, g.sec, Backends{Isolator: g.iso, Logd: logd, Netd: g.netd}, zerolog.New(g.logs),
					smallLimits(func(l *Limits) { l.MaxConcurrentStreams = tc.cap }))
			}()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Serve: %v", err)
				}
			}()

			admin := g.client(t, "alice", certs.RoleAdmin)
			run, err := admin.RunJob(ctxT(t), &jobletv1.RunJobRequest{Spec: &jobletv1.JobSpec{Command: "sleep"}})
			if err != nil {
				t.Fatal(err)
			}
			flood := g.client(t, "flood", certs.RoleViewer)
			floodCtx, stopFlood := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for range 200 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					st, err := flood.GetJobLogs(floodCtx, &jobletv1.GetJobLogsRequest{Id: run.GetJob().GetId(), Follow: true})
					if err == nil {
						st.Recv() // blocks: the job writes nothing
					}
				}()
			}
			want := int32(min(200, tc.cap))
			within(t, 10*time.Second, "followers open", func() bool { return logd.cur.Load() >= want })

			start := time.Now()
			for range 5 {
				if err := listJobs(t, admin, 2*time.Second); err != nil {
					t.Fatalf("normal client during the burst: %v", err)
				}
			}
			if _, err := admin.RunJob(ctxT(t), &jobletv1.RunJobRequest{Spec: &jobletv1.JobSpec{Command: "true"}}); err != nil {
				t.Fatalf("run during the burst: %v", err)
			}
			t.Logf("6 calls during the burst took %v", time.Since(start))
			stopFlood()
			wg.Wait()
			if m := logd.max.Load(); uint32(m) > tc.cap {
				t.Fatalf("%d streams served at once over a cap of %d", m, tc.cap)
			}
		})
	}
}

// TestIdleFlood: 5,000 TCP connections that never start their handshake,
// with the default limits (512 connections, 10 s handshake timeout), do
// not keep a normal client out: the oldest idle ones are closed to make
// room, so the client is served at once, and the gateway holds no more
// than its cap of them.
func TestIdleFlood(t *testing.T) {
	g := startGateway(t)
	lim := DefaultLimits()
	const flood = 5000
	idle := make([]net.Conn, 0, flood)
	t.Cleanup(func() {
		for _, c := range idle {
			c.Close()
		}
	})
	for range flood {
		c, err := net.Dial("tcp", g.addr)
		if err != nil {
			t.Fatalf("idle connection %d: %v", len(idle)+1, err)
		}
		idle = append(idle, c)
	}
	client := g.client(t, "alice", certs.RoleAdmin)
	start := time.Now()
	if err := listJobs(t, client, 5*time.Second); err != nil {
		t.Fatalf("a normal client under %d idle connections: %v", flood, err)
	}
	took := time.Since(start)
	// Every idle connection but the latest (cap) ones was closed by the
	// gateway; reading one of the first shows it.
	closed := 0
	for _, c := range idle[:flood-lim.MaxConnections] {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
			closed++
		}
	}
	t.Logf("served in %v beside %d idle connections; %d of the oldest %d closed by the gateway",
		took.Round(time.Millisecond), flood, closed, flood-lim.MaxConnections)
	if closed != flood-lim.MaxConnections {
		t.Errorf("%d of the oldest %d idle connections closed, want all (cap %d)", closed, flood-lim.MaxConnections, lim.MaxConnections)
	}
	if err := listJobs(t, client, 5*time.Second); err != nil {
		t.Fatalf("the client's next call: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestKilledClientLeavesNothing: an `rnx run` killed while attached (its
// connection drops mid-stream, as when the process dies) leaves no stream
// to logd and no goroutine behind in the gateway; the job runs on, as an
// attached job does by design.
func TestKilledClientLeavesNothing(t *testing.T) {
	g := newGateway(t)
	logd := &countingLogd{Logd: g.logd}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = l.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, l, g.sec, Backends{Isolator: g.iso, Logd: logd, Netd: g.netd}, zerolog.New(g.logs))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	admin := g.client(t, "alice", certs.RoleAdmin)
	if err := listJobs(t, admin, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	baseline := runtime.NumGoroutine()

	for round := range 3 {
		rnx := g.conn(t, g.pair(t, "rnx", certs.RoleAdmin))
		c := jobletv1.NewJobServiceClient(rnx)
		run, err := c.RunJob(ctxT(t), &jobletv1.RunJobRequest{Spec: &jobletv1.JobSpec{Command: "sleep"}})
		if err != nil {
			t.Fatal(err)
		}
		id := run.GetJob().GetId()
		// rnx run follows the job's output; a second follower as from a
		// terminal's `rnx log -f` on the same connection.
		for range 2 {
			st, err := c.GetJobLogs(context.Background(), &jobletv1.GetJobLogsRequest{Id: id, Follow: true})
			if err != nil {
				t.Fatal(err)
			}
			go st.Recv() // blocks until the connection drops
		}
		within(t, 5*time.Second, "followers open", func() bool { return logd.cur.Load() == 2 })
		rnx.Close() // the process is gone: its connection with it

		within(t, 5*time.Second, "the streams to logd to end", func() bool { return logd.cur.Load() == 0 })
		within(t, 5*time.Second, "the goroutines to go", func() bool { return runtime.NumGoroutine() <= baseline+2 })
		j, err := admin.GetJobStatus(ctxT(t), &jobletv1.GetJobStatusRequest{Id: id})
		if err != nil || j.GetJob().GetState() != jobletv1.JobState_JOB_STATE_RUNNING {
			t.Errorf("round %d: the attached job after its client died: %v %v", round, j, err)
		}
	}
	t.Logf("goroutines: %d before, %d after three killed clients", baseline, runtime.NumGoroutine())
}

package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/e2e/internal/procstat"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// normalDeadline is how long a plain `rnx run echo hi` may take while the
// gateway is flooded.
const normalDeadline = 10 * time.Second

// TestReliabilityFloods: 5,000 idle TCP connections to the gateway, then a
// burst of 1,000 concurrent log streams, and through both a normal
// `rnx run echo hi` must succeed within normalDeadline; each of the 1,000
// streams gets the whole output.
func TestReliabilityFloods(t *testing.T) {
	s := needSuite(t)
	raiseNoFile(t, 20000)
	addr := adminNode(t).Address

	t.Run("idle connections", func(t *testing.T) {
		const n = 5000
		conns := make([]net.Conn, 0, n)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		start := time.Now()
		var failed []error
		for i := 0; i < n && len(failed) < 5; i++ {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				failed = append(failed, fmt.Errorf("connection %d: %w", i+1, err))
				continue
			}
			conns = append(conns, c)
		}
		t.Logf("%d idle connections open in %v", len(conns), time.Since(start).Round(time.Millisecond))
		if len(failed) > 0 {
			// Connects time out once the listen backlog is full: the
			// gateway has stopped accepting.
			t.Errorf("only %d of %d idle connections could be opened: %v", len(conns), n, failed)
		}
		normalRun(t, "with the idle connections open")
		if p, err := s.gatewayProc(); err == nil {
			t.Logf("gateway with them open: %d fds, %d threads, RSS %.1f MiB", p.FDs, p.Threads, float64(p.RSSKiB)/1024)
		}
		for _, c := range conns {
			c.Close()
		}
		conns = nil
		// The package's suite serves the tests after this one: wait until
		// it does again (its watchdog restarts a gateway that stopped).
		closed := time.Now()
		for r := rnx(t, "run", "echo", "hi"); r.code != 0; r = rnx(t, "run", "echo", "hi") {
			if time.Since(closed) > restartTimeout {
				t.Fatalf("the gateway still does not serve %v after the idle connections were closed: %v", restartTimeout, r)
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Logf("serving again %v after the idle connections were closed", time.Since(closed).Round(time.Millisecond))
	})

	t.Run("stream burst", func(t *testing.T) {
		const n, lines = 1000, 50
		id := detach(t, "sh", "-c", "sleep 2; "+countingScript(lines, 0))
		want := countingOutput(lines)
		clients := dialGateway(t, 10)
		var ok, bad atomic.Int64
		var firstErr atomic.Value
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(c jobletv1.JobServiceClient) {
				defer wg.Done()
				got, err := readLogs(c, id)
				if err == nil && got == want {
					ok.Add(1)
					return
				}
				bad.Add(1)
				if err == nil {
					err = fmt.Errorf("%d bytes, not the %d of lines 1..%d", len(got), len(want), lines)
				}
				firstErr.CompareAndSwap(nil, err)
			}(clients[i%len(clients)])
		}
		time.Sleep(time.Second) // the streams are open and waiting
		normalRun(t, "during a burst of 1,000 streams")
		wg.Wait()
		if bad.Load() > 0 {
			t.Errorf("%d of %d streams did not get the whole output; the first: %v", bad.Load(), n, firstErr.Load())
		}
		t.Logf("%d of %d concurrent streams got the whole output", ok.Load(), n)
	})
}

// TestReliabilityStalledFollowers: 100 followers that open a log stream
// and never read it neither slow the job down (its run time is compared
// with the same job's without followers) nor grow logd's or the gateway's
// memory without bound (RSS sampled throughout).
func TestReliabilityStalledFollowers(t *testing.T) {
	s := needSuite(t)
	raiseNoFile(t, 20000)
	// 64 MiB of output after a second in which the followers attach.
	script := "sleep 1; yes abcdefghijklmnop | head -c 67108864"
	runtime := func(id string) time.Duration {
		waitStatus(t, id, "COMPLETED", 120*time.Second)
		rec := statusJSON(t, id)
		return jsonTime(t, rec, "end_time").Sub(jsonTime(t, rec, "start_time"))
	}
	alone := runtime(detach(t, "sh", "-c", script))

	pids, err := s.pids()
	if err != nil {
		t.Fatal(err)
	}
	base := map[string]int64{}
	peak := map[string]int64{}
	for _, svc := range []string{"logd", "gateway"} {
		p, err := procstat.Read(pids[svc])
		if err != nil {
			t.Fatal(err)
		}
		base[svc], peak[svc] = p.RSSKiB, p.RSSKiB
	}
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			for _, svc := range []string{"logd", "gateway"} {
				if p, err := procstat.Read(pids[svc]); err == nil && p.RSSKiB > peak[svc] {
					peak[svc] = p.RSSKiB
				}
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	id := detach(t, "sh", "-c", script)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// One connection per follower, so no follower shares flow control with another.
	for i, c := range dialGateway(t, 100) {
		if _, err := c.GetJobLogs(ctx, &jobletv1.GetJobLogsRequest{Id: id, Follow: true}); err != nil {
			t.Fatalf("stalled follower %d: %v", i, err)
		}
	}
	with := runtime(id)
	close(stopSampling)
	<-sampled
	cancel()

	t.Logf("the job took %v alone and %v with 100 stalled followers", alone.Round(time.Millisecond), with.Round(time.Millisecond))
	// Twice as long plus a second: the machine is shared and noisy; a job
	// held back by its followers would wait for them forever instead.
	if with > 2*alone+scaled(time.Second) {
		t.Errorf("100 stalled followers slowed the job: %v, %v alone", with, alone)
	}
	for _, svc := range []string{"logd", "gateway"} {
		growth := peak[svc] - base[svc]
		t.Logf("%s RSS %.1f MiB before, peak %.1f MiB with the followers", svc, float64(base[svc])/1024, float64(peak[svc])/1024)
		// 64 MiB of output to 100 followers is 6.4 GB if buffered per
		// follower; flow control allows each stalled stream a window, not
		// the output. 64 MiB of growth is one copy of the whole output.
		// Race-built daemons hold the detector's memory too.
		if bound := int64(64<<10) * int64(raceFactor()); int64(growth) > bound {
			t.Errorf("%s grew by %.1f MiB with 100 stalled followers (bound %d MiB)", svc, float64(growth)/1024, bound>>10)
		}
	}
}

// normalRun runs `rnx run echo hi` and fails unless it works within normalDeadline.
func normalRun(t *testing.T, when string) {
	t.Helper()
	r := rnx(t, "run", "echo", "hi")
	if r.code != 0 || r.stdout != "hi\n" || r.took > normalDeadline {
		t.Errorf("rnx run echo hi %s: want hi within %v; got %v", when, normalDeadline, r)
		return
	}
	t.Logf("rnx run echo hi %s: %v", when, r.took.Round(time.Millisecond))
}

// raiseNoFile raises this process's open-file limit to n (soft and hard).
func raiseNoFile(t *testing.T, n uint64) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	if old.Cur >= n {
		return
	}
	lim := syscall.Rlimit{Cur: n, Max: max(n, old.Max)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("raise RLIMIT_NOFILE to %d: %v", n, err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// dialGateway opens n gRPC connections to the gateway with the admin
// certificate, closed when the test ends.
func dialGateway(t *testing.T, n int) []jobletv1.JobServiceClient {
	t.Helper()
	node := adminNode(t)
	cert, err := tls.X509KeyPair([]byte(node.Cert), []byte(node.Key))
	if err != nil {
		t.Fatalf("admin certificate: %v", err)
	}
	cfg := serverTLS(t, *node)
	cfg.Certificates = []tls.Certificate{cert}
	cfg.MinVersion = tls.VersionTLS13
	var out []jobletv1.JobServiceClient
	for i := 0; i < n; i++ {
		cc, err := grpc.NewClient(node.Address, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		out = append(out, jobletv1.NewJobServiceClient(cc))
	}
	return out
}

// readLogs follows a job's log to its end over gRPC and returns its bytes.
func readLogs(c jobletv1.JobServiceClient, id string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := c.GetJobLogs(ctx, &jobletv1.GetJobLogsRequest{Id: id, Follow: true})
	if err != nil {
		return "", err
	}
	var b []byte
	for {
		ch, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return string(b), nil
		}
		if err != nil {
			return string(b), err
		}
		b = append(b, ch.GetData()...)
	}
}

// gatewayProc counts the gateway's fds, threads and memory.
func (s *suite) gatewayProc() (procstat.Proc, error) {
	pids, err := s.pids()
	if err != nil {
		return procstat.Proc{}, err
	}
	return procstat.Read(pids["gateway"])
}

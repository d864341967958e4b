package service

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/joblet-dev/joblet/deploy/certs"
	"github.com/joblet-dev/joblet/gateway/internal/fake"
	"github.com/joblet-dev/joblet/proto/config"
	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/logdapi"
)

// gateway is a real gateway on 127.0.0.1 with fake helpers behind it.
type gateway struct {
	ca   *certs.CA
	addr string
	sec  config.Security
	iso  *fake.Isolator
	logd *fake.Logd
	netd *fake.Netd
	logs *syncBuffer
	stop func() error // stops the gateway and returns what Serve returned
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startGateway(t *testing.T, opts ...Option) *gateway {
	t.Helper()
	g := newGateway(t)
	g.serve(t, opts...)
	return g
}

// newGateway makes the CA, the server's TLS material and the fakes; serve
// starts it, so a test can adjust g.sec first.
func newGateway(t *testing.T) *gateway {
	t.Helper()
	ca, err := certs.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	srvPair, err := ca.Server("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return &gateway{
		ca:   ca,
		sec:  config.Security{ServerCert: string(srvPair.CertPEM), ServerKey: string(srvPair.KeyPEM), CACert: string(ca.CertPEM)},
		iso:  &fake.Isolator{},
		logd: &fake.Logd{},
		netd: &fake.Netd{},
		logs: &syncBuffer{},
	}
}

func (g *gateway) serve(t *testing.T, opts ...Option) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = l.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, l, g.sec, Backends{Isolator: g.iso, Logd: g.logd, Netd: g.netd}, zerolog.New(g.logs), opts...)
	}()
	var once sync.Once
	var serveErr error
	g.stop = func() error {
		once.Do(func() { cancel(); serveErr = <-done })
		return serveErr
	}
	t.Cleanup(func() {
		if err := g.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

// pair issues a client certificate with the given OUs.
func (g *gateway) pair(t *testing.T, cn string, ous ...string) certs.Pair {
	t.Helper()
	p, err := g.ca.ClientWith(cn, ous, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// conn dials the gateway presenting p (none if p is empty); mods adjust the
// client's TLS config.
func (g *gateway) conn(t *testing.T, p certs.Pair, mods ...func(*tls.Config)) *grpc.ClientConn {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(g.ca.CertPEM)
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if p.CertPEM != nil {
		c, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	for _, m := range mods {
		m(tc)
	}
	cc, err := grpc.NewClient(g.addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func (g *gateway) client(t *testing.T, cn string, ous ...string) jobletv1.JobServiceClient {
	return jobletv1.NewJobServiceClient(g.conn(t, g.pair(t, cn, ous...)))
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, err error, code codes.Code, msgPart string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || !strings.Contains(st.Message(), msgPart) {
		t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), code, msgPart)
	}
}

// readAll reads a log stream to its end.
func readAll(t *testing.T, st grpc.ServerStreamingClient[jobletv1.LogChunk]) ([]*jobletv1.LogChunk, error) {
	t.Helper()
	var out []*jobletv1.LogChunk
	for {
		c, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, c)
	}
}

func appendLog(t *testing.T, l *fake.Logd, id string, eof bool, data ...string) {
	t.Helper()
	var recs []logdapi.Record
	for i, d := range data {
		s := jobletv1.Stream_STREAM_STDOUT
		if i%2 == 1 {
			s = jobletv1.Stream_STREAM_STDERR
		}
		recs = append(recs, logdapi.Record{Stream: s, Data: []byte(d)})
	}
	if _, err := l.Append(context.Background(), id, recs, eof); err != nil {
		t.Fatal(err)
	}
}

func joined(chunks []*jobletv1.LogChunk) string {
	var b strings.Builder
	var off int64
	for _, c := range chunks {
		if c.Offset != off {
			return "offset gap"
		}
		off += int64(len(c.Data))
		b.Write(c.Data)
	}
	return b.String()
}

func TestAdminCanDoEverything(t *testing.T) {
	g := startGateway(t)
	c := g.client(t, "alice", certs.RoleAdmin)
	ctx := ctxT(t)

	run, err := c.RunJob(ctx, &jobletv1.RunJobRequest{Spec: &jobletv1.JobSpec{Command: "echo", Args: []string{"s3cret-token"}}})
	if err != nil {
		t.Fatal(err)
	}
	id := run.GetJob().GetId()
	if id != "1" || run.GetJob().GetCommand() != "echo" {
		t.Fatalf("run: %v", run.GetJob())
	}
	list, err := c.ListJobs(ctx, &jobletv1.ListJobsRequest{})
	if err != nil || len(list.GetJobs()) != 1 || list.GetJobs()[0].GetId() != id {
		t.Fatalf("list: %v %v", list, err)
	}
	st, err := c.GetJobStatus(ctx, &jobletv1.GetJobStatusRequest{Id: id})
	if err != nil || st.GetJob().GetState() != jobletv1.JobState_JOB_STATE_RUNNING {
		t.Fatalf("status: %v %v", st, err)
	}
	// wait_ms reaches the isolator's Wait, capped by the gateway.
	if len(g.iso.Waits) != 0 {
		t.Fatalf("a status call without wait waited: %v", g.iso.Waits)
	}
	for _, ms := range []uint32{1500, 3_600_000} {
		st, err = c.GetJobStatus(ctx, &jobletv1.GetJobStatusRequest{Id: id, WaitMs: ms})
		if err != nil || st.GetJob().GetId() != id {
			t.Fatalf("status with wait %d ms: %v %v", ms, st, err)
		}
	}
	if want := []time.Duration{1500 * time.Millisecond, 30 * time.Second}; !slices.Equal(g.iso.Waits, want) {
		t.Fatalf("isolator waits %v, want %v (the hour capped)", g.iso.Waits, want)
	}
	appendLog(t, g.logd, id, false, "hello ", "world")
	logs, err := c.GetJobLogs(ctx, &jobletv1.GetJobLogsRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := readAll(t, logs)
	if err != nil || joined(chunks) != "hello world" {
		t.Fatalf("logs: %q %v", joined(chunks), err)
	}
	stop, err := c.StopJob(ctx, &jobletv1.StopJobRequest{Id: id})
	if err != nil || stop.GetJob().GetState() != jobletv1.JobState_JOB_STATE_STOPPED {
		t.Fatalf("stop: %v %v", stop, err)
	}

	// One line per call naming method, caller and role; never the request.
	out := g.logs.String()
	for _, want := range []string{`"method":"/joblet.v1.JobService/RunJob"`, `"peer_cn":"alice"`, `"role":"admin"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "s3cret-token") {
		t.Errorf("log shows a job argument:\n%s", out)
	}
}

func TestViewerReadsOnly(t *testing.T) {
	g := startGateway(t)
	ctx := ctxT(t)
	admin := g.client(t, "alice", certs.RoleAdmin)
	run, err := admin.RunJob(ctx, &jobletv1.RunJobRequest{Spec: &jobletv1.JobSpec{Command: "true"}})
	if err != nil {
		t.Fatal(err)
	}
	id := run.GetJob().GetId()
	appendLog(t, g.logd, id, true, "out")

	v := g.client(t, "bob", certs.RoleViewer)
	if l, err := v.ListJobs(ctx, &jobletv1.ListJobsRequest{}); err != nil || len(l.GetJobs()) != 1 {
		t.Fatalf("list: %v %v", l, err)
	}
	if _, err := v.GetJobStatus(ctx, &jobletv1.GetJobStatusRequest{Id: id}); err != nil {
		t.Fatalf("status: %v", err)
	}
	logs, err := v.GetJobLogs(ctx, &jobletv1.GetJobLogsRequest{Id: id, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	if chunks, err := readAll(t, logs); err != nil || joined(chunks) != "out" {
		t.Fatalf("logs: %q %v", joined(chunks), err)
	}

	_, err = v.RunJob(ctx, &jobletv1.RunJobRequest{Spec: &jobletv1.JobSpec{Command: "true"}})
	wantCode(t, err, codes.PermissionDenied, `permission denied: role "viewer" may not call RunJob`)
	_, err = v.StopJob(ctx, &jobletv1.StopJobRequest{Id: id})
	wantCode(t, err, codes.PermissionDenied, `permission denied: role "viewer" may not call StopJob`)
	if st, _ := admin.GetJobStatus(ctx, &jobletv1.GetJobStatusRequest{Id: id}); st.GetJob().GetState() != jobletv1.JobState_JOB_STATE_RUNNING {
		t.Fatalf("viewer's refused stop changed the job: %v", st.GetJob().GetState())
	}
}

func TestBadCertificatesAreRefused(t *testing.T) {
	g := startGateway(t)
	other, err := certs.NewCA("other CA")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.Client("mallory", certs.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := g.ca.ClientWith("old", []string{certs.RoleAdmin}, -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	withEKU := func(eku ...x509.ExtKeyUsage) certs.Pair {
		tmpl, err := certs.Template("odd", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.Subject.OrganizationalUnit = []string{certs.RoleAdmin}
		tmpl.ExtKeyUsage = eku
		p, err := g.ca.Issue(tmpl)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := g.pair(t, "alice", certs.RoleAdmin)
	tls12 := func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }
	// Go's client leaves out a certificate the server's CA list does not
	// name; send it anyway, as an attacker would, so the server must judge it.
	always := func(c *tls.Config) {
		cert := c.Certificates[0]
		c.Certificates = nil
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}

	// Refused in the TLS handshake: the call never reaches the gateway's
	// handlers, the client sees the connection fail.
	for _, tc := range []struct {
		name   string
		p      certs.Pair
		mods   []func(*tls.Config)
		reason string // in the gateway's log
	}{
		{"no client certificate", certs.Pair{}, nil, "didn't provide a certificate"},
		{"another CA", foreign, []func(*tls.Config){always}, "signed by unknown authority"},
		{"expired", expired, nil, "expired"},
		{"serverAuth only", withEKU(x509.ExtKeyUsageServerAuth), nil, "incompatible key usage"},
		{"no extended key usage", withEKU(), nil, "not for client authentication"},
		{"TLS 1.2 client", good, []func(*tls.Config){tls12}, "unsupported versions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := jobletv1.NewJobServiceClient(g.conn(t, tc.p, tc.mods...))
			_, err := c.ListJobs(ctxT(t), &jobletv1.ListJobsRequest{})
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("got %v, want the connection refused (Unavailable)", err)
			}
			// The client may see the alert before the server has logged.
			for deadline := time.Now().Add(2 * time.Second); !strings.Contains(g.logs.String(), tc.reason); {
				if time.Now().After(deadline) {
					t.Fatalf("gateway did not log %q:\n%s", tc.reason, g.logs.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}

	// Refused by role: the certificate is valid, its OU is not.
	for _, tc := range []struct {
		name string
		ous  []string
		msg  string
	}{
		{"no OU", nil, "client certificate has no role (OU)"},
		{"two OUs", []string{certs.RoleAdmin, certs.RoleViewer}, "client certificate has more than one role"},
		{"unknown OU", []string{"root"}, `unknown role "root"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := g.client(t, "eve", tc.ous...)
			_, err := c.ListJobs(ctxT(t), &jobletv1.ListJobsRequest{})
			wantCode(t, err, codes.Unauthenticated, tc.msg)
			logs, err := c.GetJobLogs(ctxT(t), &jobletv1.GetJobLogsRequest{Id: "1"})
			if err == nil {
				_, err = readAll(t, logs)
			}
			wantCode(t, err, codes.Unauthenticated, tc.msg)
		})
	}

	// The same certificate that was refused for TLS 1.2 works with 1.3.
	if _, err := jobletv1.NewJobServiceClient(g.conn(t, good)).ListJobs(ctxT(t), &jobletv1.ListJobsRequest{}); err != nil {
		t.Fatalf("good certificate: %v", err)
	}
}

func TestErrorsReachTheClientMapped(t *testing.T) {
	g := startGateway(t)
	c := g.client(t, "alice", certs.RoleAdmin)
	ctx := ctxT(t)

	_, err := c.GetJobStatus(ctx, &jobletv1.GetJobStatusRequest{Id: "42"})
	wantCode(t, err, codes.NotFound, "job 42 not found")
	_, err = c.StopJob(ctx, &jobletv1.StopJobRequest{Id: "42"})
	wantCode(t, err, codes.NotFound, "job 42 not found")
	logs, err := c.GetJobLogs(ctx, &jobletv1.GetJobLogsRequest{Id: "42", Follow: true})
	if err == nil {
		_, err = readAll(t, logs)
	}
	wantCode(t, err, codes.NotFound, "job 42 not found")

	_, err = c.GetJobStatus(ctx, &jobletv1.GetJobStatusRequest{Id: "4x"})
	wantCode(t, err, codes.InvalidArgument, `invalid job id "4x"`)
	_, err = c.RunJob(ctx, &jobletv1.RunJobRequest{Spec: &jobletv1.JobSpec{Command: "echo", Args: []string{"a\x00b"}}})
	wantCode(t, err, codes.InvalidArgument, "NUL")
	_, err = c.RunJob(ctx, &jobletv1.RunJobRequest{})
	wantCode(t, err, codes.InvalidArgument, "job spec is required")

	// Bigger than the receive limit: refused by gRPC before any handler.
	huge := strings.Repeat("x", DefaultLimits().MaxRecvMsgSize+1)
	_, err = c.RunJob(ctx, &jobletv1.RunJobRequest{Spec: &jobletv1.JobSpec{Command: "echo", Args: []string{huge}}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized request: %v", err)
	}

	// A helper that cannot be reached: a plain message, no socket paths.
	g.iso.Fail = errdefs.Errorf(errdefs.ErrUnavailable, "dial unix /run/joblet/isolator.sock: connect: no such file or directory")
	_, err = c.ListJobs(ctx, &jobletv1.ListJobsRequest{})
	wantCode(t, err, codes.Unavailable, "the isolator service is unavailable")
	if strings.Contains(status.Convert(err).Message(), "/run/joblet") {
		t.Fatalf("message shows a path: %v", err)
	}
	// An error of no known kind: internals stay in the log.
	g.iso.Fail = errors.New("open /var/lib/joblet/isolator/jobs.json: input/output error")
	_, err = c.ListJobs(ctx, &jobletv1.ListJobsRequest{})
	wantCode(t, err, codes.Internal, "internal error")
	if !strings.Contains(g.logs.String(), "jobs.json") {
		t.Fatalf("the internal error was not logged:\n%s", g.logs.String())
	}
}

func TestLogsFollowUntilClosed(t *testing.T) {
	g := startGateway(t)
	c := g.client(t, "alice", certs.RoleAdmin)
	ctx := ctxT(t)
	run, err := c.RunJob(ctx, &jobletv1.RunJobRequest{Spec: &jobletv1.JobSpec{Command: "seq"}})
	if err != nil {
		t.Fatal(err)
	}
	id := run.GetJob().GetId()
	appendLog(t, g.logd, id, false, "1\n", "2\n")

	st, err := c.GetJobLogs(ctx, &jobletv1.GetJobLogsRequest{Id: id, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []*jobletv1.LogChunk
	for len(got) < 2 {
		ch, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ch)
	}
	// The follower is now waiting; more output arrives, then the log closes.
	appendLog(t, g.logd, id, false, "3\n")
	appendLog(t, g.logd, id, true, "4\n")
	rest, err := readAll(t, st)
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, rest...)
	if s := joined(got); s != "1\n2\n3\n4\n" {
		t.Fatalf("followed %q", s)
	}
	if got[1].GetStream() != jobletv1.Stream_STREAM_STDERR || got[0].GetStream() != jobletv1.Stream_STREAM_STDOUT {
		t.Fatalf("streams lost: %v", got)
	}

	// Once ended, a follow returns everything and ends at once.
	g.iso.SetState(id, jobletv1.JobState_JOB_STATE_COMPLETED)
	st, err = c.GetJobLogs(ctx, &jobletv1.GetJobLogsRequest{Id: id, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	if again, err := readAll(t, st); err != nil || joined(again) != "1\n2\n3\n4\n" {
		t.Fatalf("after end: %q %v", joined(again), err)
	}

	// A job that ended without ever writing (canceled before it ran): a
	// follow ends empty instead of waiting for a log that never comes; so
	// does a plain read of a job that has written nothing yet.
	run, err = c.RunJob(ctx, &jobletv1.RunJobRequest{Spec: &jobletv1.JobSpec{Command: "later"}})
	if err != nil {
		t.Fatal(err)
	}
	quiet := run.GetJob().GetId()
	st, err = c.GetJobLogs(ctx, &jobletv1.GetJobLogsRequest{Id: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if none, err := readAll(t, st); err != nil || len(none) != 0 {
		t.Fatalf("read of a silent job: %v %v", none, err)
	}
	g.iso.SetState(quiet, jobletv1.JobState_JOB_STATE_CANCELED)
	st, err = c.GetJobLogs(ctx, &jobletv1.GetJobLogsRequest{Id: quiet, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	if none, err := readAll(t, st); err != nil || len(none) != 0 {
		t.Fatalf("follow of a canceled job: %v %v", none, err)
	}
}

func TestStopEndsFollowers(t *testing.T) {
	g := startGateway(t)
	c := g.client(t, "alice", certs.RoleAdmin)
	ctx := ctxT(t)
	run, err := c.RunJob(ctx, &jobletv1.RunJobRequest{Spec: &jobletv1.JobSpec{Command: "sleep"}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.GetJobLogs(ctx, &jobletv1.GetJobLogsRequest{Id: run.GetJob().GetId(), Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	appendLog(t, g.logd, run.GetJob().GetId(), false, "x")
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := g.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if d := time.Since(start); d > shutdownGrace+2*time.Second {
		t.Fatalf("shutdown took %v with a follower attached", d)
	}
	if _, err := st.Recv(); err == nil {
		t.Fatal("follower still open after shutdown")
	}
}

package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/deploy/certs"
	"github.com/joblet-dev/joblet/proto/clientconfig"
	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fakeJobs is a JobService that plays a gateway: it checks the role in the
// client certificate's OU and "runs" a few scripted commands:
//
//	echo ARGS...  prints ARGS and exits 0
//	exit N        prints "out\n" and "err\n", exits N
//	sleep N       runs until stopped (SIGTERM: 143)
//	big N         prints N bytes of a pattern
//	flaky         prints three lines; its first log stream breaks after two
//	evil          prints terminal escapes
//	missing       fails to start
//	unavailable   is refused with Unavailable, as when a helper is down
//	slowend MS    prints "ran\n"; its log ends at once, its record MS ms later
//	anything else prints "ran\n" and exits 0
//
// A job with a schedule stays SCHEDULED, due an hour after epoch, until it
// is stopped (CANCELED).
type fakeJobs struct {
	jobletv1.UnimplementedJobServiceServer
	mu     sync.Mutex
	nextID int
	jobs   map[string]*fakeJob
	specs  []*jobletv1.JobSpec
	stops  []string
	// unavailableReads makes that many ListJobs and GetJobStatus calls
	// fail as unavailable, as while a helper restarts.
	unavailableReads int
	reads            int // ListJobs and GetJobStatus calls answered
	// oldServer makes GetJobStatus ignore wait, as a gateway from before
	// the field does.
	oldServer bool
}

// read counts a read call, and fails it while unavailableReads lasts.
func (f *fakeJobs) read() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.unavailableReads > 0 {
		f.unavailableReads--
		return status.Error(codes.Unavailable, "isolator is restarting")
	}
	return nil
}

type fakeJob struct {
	job    *jobletv1.Job
	output []*jobletv1.LogChunk
	final  *jobletv1.Job // the record once ended
	done   chan struct{} // closed when the job ends
	endsAt time.Time     // when the record turns final, if after done
	// failAfter, if set, makes the first GetJobLogs fail as unavailable
	// after that many chunks, as when logd restarts.
	failAfter int
}

var epoch = time.Date(2025, 7, 11, 6, 18, 54, 0, time.UTC)

func role(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 || len(info.State.PeerCertificates[0].Subject.OrganizationalUnit) == 0 {
		return ""
	}
	return info.State.PeerCertificates[0].Subject.OrganizationalUnit[0]
}

func adminOnly(ctx context.Context, method string) error {
	if r := role(ctx); r != certs.RoleAdmin {
		return status.Errorf(codes.PermissionDenied, "permission denied: role %s may not call %s", r, method)
	}
	return nil
}

func chunk(s jobletv1.Stream, data []byte) *jobletv1.LogChunk {
	return &jobletv1.LogChunk{Stream: s, Data: data}
}

func (f *fakeJobs) RunJob(ctx context.Context, req *jobletv1.RunJobRequest) (*jobletv1.RunJobResponse, error) {
	if err := adminOnly(ctx, "RunJob"); err != nil {
		return nil, err
	}
	spec := req.GetSpec()
	if spec.GetCommand() == "unavailable" {
		return nil, status.Error(codes.Unavailable, "isolator is not answering")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.specs = append(f.specs, spec)
	f.nextID++
	id := strconv.Itoa(f.nextID)
	job := &jobletv1.Job{
		Id: id, Command: spec.GetCommand(), Args: spec.GetArgs(), Name: spec.GetName(),
		State:      jobletv1.JobState_JOB_STATE_RUNNING,
		CreateTime: timestamppb.New(epoch), StartTime: timestamppb.New(epoch),
		Limits: spec.GetLimits(), Network: spec.GetNetwork(),
	}
	if n := spec.GetNetwork(); n != "" && n != "none" {
		job.IpAddress = "10.1.0." + strconv.Itoa(f.nextID+1)
	}
	fj := &fakeJob{job: job, done: make(chan struct{})}
	if in := spec.GetSchedule(); in != "" {
		job.State, job.StartTime = jobletv1.JobState_JOB_STATE_SCHEDULED, nil
		job.ScheduleInput, job.ScheduledTime = in, timestamppb.New(epoch.Add(time.Hour))
		f.jobs[id] = fj
		return &jobletv1.RunJobResponse{Job: cloneJob(job)}, nil // ends only when stopped
	}
	final := cloneJob(job)
	final.State = jobletv1.JobState_JOB_STATE_COMPLETED
	final.EndTime = timestamppb.New(epoch.Add(1500 * time.Millisecond))
	switch spec.GetCommand() {
	case "echo":
		fj.output = []*jobletv1.LogChunk{chunk(jobletv1.Stream_STREAM_STDOUT, []byte(strings.Join(spec.GetArgs(), " ")+"\n"))}
	case "exit":
		code, _ := strconv.Atoi(spec.GetArgs()[0])
		fj.output = []*jobletv1.LogChunk{
			chunk(jobletv1.Stream_STREAM_STDOUT, []byte("out\n")),
			chunk(jobletv1.Stream_STREAM_STDERR, []byte("err\n")),
		}
		final.ExitCode = int32(code)
		if code != 0 {
			final.State = jobletv1.JobState_JOB_STATE_FAILED
		}
	case "big":
		n, _ := strconv.Atoi(spec.GetArgs()[0])
		data := bigOutput(n)
		for len(data) > 0 {
			k := min(len(data), 32<<10)
			fj.output = append(fj.output, chunk(jobletv1.Stream_STREAM_STDOUT, data[:k]))
			data = data[k:]
		}
	case "flaky":
		fj.output = []*jobletv1.LogChunk{
			chunk(jobletv1.Stream_STREAM_STDOUT, []byte("a\n")),
			chunk(jobletv1.Stream_STREAM_STDERR, []byte("b\n")),
			chunk(jobletv1.Stream_STREAM_STDOUT, []byte("c\n")),
		}
		fj.failAfter = 2
	case "evil":
		fj.output = []*jobletv1.LogChunk{chunk(jobletv1.Stream_STREAM_STDOUT, []byte("\x1b]0;pwned\x07hi\n"))}
	case "missing", "notexec":
		// As the isolator does: the job is recorded FAILED with a shell's
		// exit code, and the error carries the record.
		job.State = jobletv1.JobState_JOB_STATE_FAILED
		job.StartTime = nil
		kind, code, msg := errdefs.ErrNotFound, int32(127), "command not found: "
		if spec.GetCommand() == "notexec" {
			kind, code, msg = errdefs.ErrPermissionDenied, 126, "cannot execute: "
		}
		job.Reason, job.ExitCode = msg+spec.GetCommand(), code
		f.jobs[id] = &fakeJob{job: job, final: cloneJob(job), done: make(chan struct{})}
		close(f.jobs[id].done)
		return nil, errdefs.ToGRPC(errdefs.WithJob(errdefs.Errorf(kind, "job %s: %s", id, job.Reason), cloneJob(job)))
	case "sleep":
		fj.output = []*jobletv1.LogChunk{chunk(jobletv1.Stream_STREAM_STDOUT, []byte("sleeping\n"))}
		f.jobs[id] = fj
		return &jobletv1.RunJobResponse{Job: cloneJob(job)}, nil // ends only when stopped
	case "slowend":
		fj.output = []*jobletv1.LogChunk{chunk(jobletv1.Stream_STREAM_STDOUT, []byte("ran\n"))}
		ms, _ := strconv.Atoi(spec.GetArgs()[0])
		fj.endsAt = time.Now().Add(time.Duration(ms) * time.Millisecond)
	default:
		fj.output = []*jobletv1.LogChunk{chunk(jobletv1.Stream_STREAM_STDOUT, []byte("ran\n"))}
	}
	var off int64
	for _, c := range fj.output {
		c.Offset = off
		off += int64(len(c.GetData()))
	}
	fj.final = final
	close(fj.done)
	f.jobs[id] = fj
	return &jobletv1.RunJobResponse{Job: cloneJob(job)}, nil
}

// bigOutput is the first n bytes of `seq 0 ...`.
func bigOutput(n int) []byte {
	b := make([]byte, 0, n+20)
	for i := int64(0); len(b) < n; i++ {
		b = strconv.AppendInt(b, i, 10)
		b = append(b, '\n')
	}
	return b[:n]
}

func cloneJob(j *jobletv1.Job) *jobletv1.Job {
	return proto.Clone(j).(*jobletv1.Job)
}

// current is the job's record now: RUNNING until done, then final.
func (fj *fakeJob) current() *jobletv1.Job {
	select {
	case <-fj.done:
		if time.Now().Before(fj.endsAt) {
			return fj.job
		}
		return fj.final
	default:
		return fj.job
	}
}

func (f *fakeJobs) get(id string) (*fakeJob, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fj, ok := f.jobs[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "job %s not found", id)
	}
	return fj, nil
}

func (f *fakeJobs) GetJobStatus(ctx context.Context, req *jobletv1.GetJobStatusRequest) (*jobletv1.GetJobStatusResponse, error) {
	if err := f.read(); err != nil {
		return nil, err
	}
	fj, err := f.get(req.GetId())
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	old := f.oldServer
	f.mu.Unlock()
	if ms := req.GetWaitMs(); ms > 0 && !old {
		limit := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer limit.Stop()
		select {
		case <-fj.done:
			end := time.NewTimer(time.Until(fj.endsAt))
			defer end.Stop()
			select {
			case <-end.C:
			case <-limit.C:
			case <-ctx.Done():
			}
		case <-limit.C:
		case <-ctx.Done():
		}
	}
	return &jobletv1.GetJobStatusResponse{Job: fj.current()}, nil
}

func (f *fakeJobs) ListJobs(context.Context, *jobletv1.ListJobsRequest) (*jobletv1.ListJobsResponse, error) {
	if err := f.read(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*jobletv1.Job
	for i := 1; i <= f.nextID; i++ {
		out = append(out, f.jobs[strconv.Itoa(i)].current())
	}
	return &jobletv1.ListJobsResponse{Jobs: out}, nil
}

func (f *fakeJobs) StopJob(ctx context.Context, req *jobletv1.StopJobRequest) (*jobletv1.StopJobResponse, error) {
	if err := adminOnly(ctx, "StopJob"); err != nil {
		return nil, err
	}
	fj, err := f.get(req.GetId())
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stops = append(f.stops, req.GetId())
	select {
	case <-fj.done:
	default:
		final := cloneJob(fj.job)
		final.State = jobletv1.JobState_JOB_STATE_STOPPED
		final.EndTime = timestamppb.New(epoch.Add(time.Minute))
		final.Signal, final.ExitCode, final.Reason = 15, 143, "stopped by user"
		if fj.job.GetState() == jobletv1.JobState_JOB_STATE_SCHEDULED {
			final.State, final.Signal, final.ExitCode, final.Reason = jobletv1.JobState_JOB_STATE_CANCELED, 0, 0, "canceled before it started"
		}
		fj.final = final
		close(fj.done)
	}
	return &jobletv1.StopJobResponse{Job: fj.final}, nil
}

func (f *fakeJobs) GetJobLogs(req *jobletv1.GetJobLogsRequest, stream jobletv1.JobService_GetJobLogsServer) error {
	fj, err := f.get(req.GetId())
	if err != nil {
		return err
	}
	f.mu.Lock()
	failAfter := fj.failAfter
	fj.failAfter = 0
	f.mu.Unlock()
	for i, c := range fj.output {
		if failAfter > 0 && i == failAfter {
			return status.Error(codes.Unavailable, "logd is restarting")
		}
		if err := stream.Send(c); err != nil {
			return err
		}
	}
	if req.GetFollow() {
		select {
		case <-fj.done:
		case <-stream.Context().Done():
		}
	}
	return nil
}

// stop ends a sleeping job as StopJob would, without an RPC.
func (f *fakeJobs) stop(t *testing.T, id string) {
	t.Helper()
	fj, err := f.get(id)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	final := cloneJob(fj.job)
	final.State = jobletv1.JobState_JOB_STATE_STOPPED
	final.Signal, final.ExitCode = 15, 143
	fj.final = final
	close(fj.done)
}

func (f *fakeJobs) stopped() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.stops...)
}

// suite is a fake gateway over real mTLS and a config naming it.
type suite struct {
	fake   *fakeJobs
	nets   *fakeNetworks
	addr   string
	config string // path of the client config
	ca     *certs.CA
	pair   certs.Pair // the server's certificate
	stop   func()     // stops the fake gateway
	dir    string
}

// restart stops the fake gateway and starts it again on the same address.
func (s *suite) restart(t *testing.T) {
	t.Helper()
	s.stop()
	_, s.stop = serveAt(t, s.addr, s.ca, s.pair, s.fake, s.nets)
}

// newSuite starts a fake gateway on 127.0.0.1:0 with a fresh CA and writes a
// client config with nodes "default" (admin), "viewer", and "down" (a port
// nothing listens on).
func newSuite(t *testing.T) *suite {
	t.Helper()
	ca := mustCA(t)
	srvPair, err := ca.Server("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeJobs{jobs: map[string]*fakeJob{}}
	nets := newFakeNetworks()
	addr, stop := serveAt(t, "127.0.0.1:0", ca, srvPair, fake, nets)
	s := &suite{fake: fake, nets: nets, addr: addr, ca: ca, pair: srvPair, stop: stop, dir: t.TempDir()}
	s.config = filepath.Join(s.dir, "rnx-config.yml")
	cfg := &clientconfig.Config{Version: "3.0", Nodes: map[string]*clientconfig.Node{
		"default": node(t, ca, addr, certs.RoleAdmin),
		"viewer":  node(t, ca, addr, certs.RoleViewer),
		"down":    node(t, ca, closedPort(t), certs.RoleAdmin),
	}}
	if err := clientconfig.Save(cfg, s.config); err != nil {
		t.Fatal(err)
	}
	return s
}

func mustCA(t *testing.T) *certs.CA {
	t.Helper()
	ca, err := certs.NewCA("rnx test CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func node(t *testing.T, ca *certs.CA, addr, role string) *clientconfig.Node {
	t.Helper()
	p, err := ca.Client("rnx-test-"+role, role)
	if err != nil {
		t.Fatal(err)
	}
	return &clientconfig.Node{Address: addr, Cert: string(p.CertPEM), Key: string(p.KeyPEM), CA: string(ca.CertPEM)}
}

// serve runs svc over mTLS on a free port until the test ends and returns
// its address.
func serve(t *testing.T, ca *certs.CA, pair certs.Pair, svc jobletv1.JobServiceServer) string {
	t.Helper()
	addr, _ := serveAt(t, "127.0.0.1:0", ca, pair, svc, nil)
	return addr
}

// serveAt runs svc, and nets unless nil, over mTLS (TLS 1.3, client
// certificates from ca required) on addr until the test ends or stop is
// called.
func serveAt(t *testing.T, addr string, ca *certs.CA, pair certs.Pair, svc jobletv1.JobServiceServer, nets jobletv1.NetworkServiceServer) (string, func()) {
	t.Helper()
	cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	creds := credentials.NewTLS(&tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	})
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(creds))
	jobletv1.RegisterJobServiceServer(srv, svc)
	if nets != nil {
		jobletv1.RegisterNetworkServiceServer(srv, nets)
	}
	go srv.Serve(lis) //nolint:errcheck // ends with Stop
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), srv.Stop
}

// closedPort returns an address on 127.0.0.1 where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// result is what one in-process rnx run produced.
type result struct {
	code           int
	stdout, stderr string
}

// rnx runs the CLI in-process against the suite's config.
func (s *suite) rnx(t *testing.T, args ...string) result {
	t.Helper()
	return s.rnxWith(t, func(*Env) {}, args...)
}

func (s *suite) rnxWith(t *testing.T, adjust func(*Env), args ...string) result {
	t.Helper()
	var stdout, stderr syncBuffer
	env := Env{
		Args:   append([]string{"--config", s.config}, args...),
		Stdout: &stdout, Stderr: &stderr,
		Getenv:       func(string) string { return "" },
		Dir:          s.dir,
		SystemConfig: filepath.Join(s.dir, "no-system-config"),
		IsTerminal:   func(w io.Writer) bool { return false },
		Signals: func() (<-chan os.Signal, func()) {
			return make(chan os.Signal), func() {}
		},
		Now: func() time.Time { return epoch.Add(time.Hour) },
	}
	adjust(&env)
	code := Main(env)
	return result{code, stdout.String(), stderr.String()}
}

// syncBuffer is a bytes.Buffer safe for the writes of several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

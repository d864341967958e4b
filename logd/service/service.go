// Package service runs logd: the log store served over gRPC on logd's Unix
// socket, to root and the gateway only, with the standard health service.
package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/joblet-dev/joblet/logd/store"
	"github.com/joblet-dev/joblet/proto/daemon"
	"github.com/joblet-dev/joblet/proto/errdefs"
	logdv1 "github.com/joblet-dev/joblet/proto/gen/logd/v1"
	"github.com/joblet-dev/joblet/proto/logdapi"
	"github.com/joblet-dev/joblet/proto/logging"
	"github.com/joblet-dev/joblet/proto/transport"
)

// stopGrace is how long writes in flight get to finish at shutdown before
// every call, followers included, is cut.
const stopGrace = 2 * time.Second

// writeWindow is the HTTP/2 flow-control window logd grants each writer:
// one forwarder batch (isolator/output), so a batch is never held up by
// window updates. It bounds what one connection can have in flight, not
// what is allocated.
const writeWindow = 1 << 20

// Run serves logd on env.Listener until ctx is done.
func Run(ctx context.Context, env daemon.Env) error {
	if env.Listener == nil {
		return errors.New("logd needs its socket")
	}
	dir := env.Config.StateDir("logd")
	st, err := store.Open(dir, store.Options{MaxLogBytes: env.Config.Logd.MaxLogBytes, Log: env.Log})
	if err != nil {
		return fmt.Errorf("open log store: %w", err)
	}
	tuneGC(ctx, st)

	srv := grpc.NewServer(append(transport.ServerOptions(),
		grpc.Creds(transport.PeerCreds(env.Config.Gateway.UID)), grpc.ForceServerCodecV2(codec{}),
		// A shim sends its job's output in batches of about a MiB: at gRPC's
		// 64 KiB starting window each batch waits on a dozen window updates
		// until the dynamic estimate has grown, so start at the batch size.
		grpc.InitialWindowSize(writeWindow), grpc.InitialConnWindowSize(writeWindow))...)
	lg := logged{Logd: st, log: env.Log}
	logdapi.Register(srv, lg)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	hs.SetServingStatus(logdv1.Logd_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)

	served := make(chan error, 1)
	// Shims hand over their jobs' pipes on connections of their own to the
	// same socket (logdapi.ServePipes); gRPC gets the rest.
	go func() { served <- srv.Serve(logdapi.ServePipes(env.Listener, lg, env.Log)) }()
	env.Log.Info().Str("dir", dir).Str("socket", env.Listener.Addr().String()).Msg("serving")

	select {
	case <-ctx.Done():
	case err = <-served:
		err = fmt.Errorf("serve: %w", err)
	}
	hs.Shutdown()
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(stopGrace):
		srv.Stop() // followers wait for output forever; end them
		<-stopped
	}
	err = errors.Join(err, st.Close())
	env.Log.Info().Msg("stopped")
	return err
}

// tuneGC makes the collector run less often while output flows. Every
// byte of job output passes through logd as short-lived garbage (a received
// message, a chunk read back), while what logd keeps alive is a few MiB: at
// the default GOGC=100 it collects every few MiB of output, hundreds of
// times per GiB. So while logd allocates, or stores output, at fastRate or
// more it runs at GOGC=400, a quarter of the collections (output counts
// too: an attached reader's chunks are pooled and the job's pipes spliced,
// so a fast log allocates only 2–3 MiB/s); otherwise at the default, whose
// lower first collection (4 MiB of heap, not 16) keeps a burst of jobs that
// write little from growing the heap to 16–20 MiB, and from keeping the
// span structures and bookkeeping the runtime never returns for it. A soft
// memory limit keeps the heap well under the 64 MiB
// logd is allowed whatever the load. GOGC or GOMEMLIMIT in the environment
// win.
func tuneGC(ctx context.Context, st *store.Store) {
	if os.Getenv("GOGC") == "" {
		go daemon.GCPercentUnderLoad(ctx, 100, 400, fastRate, func() uint64 { return uint64(st.Written()) })
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(40 << 20)
	}
}

// fastRate is the rate, in bytes allocated plus bytes of output stored per
// second, above which logd collects less often. Measured (session 7): 16
// followers of a job writing 1 GiB make logd allocate 12–20 MiB/s, one
// attached reader 2–3 (and the job writes 200+ MiB/s), 1000 jobs at 32 at
// once without output 1–2.
const fastRate = 8 << 20

// The power-of-two buffer pool: see transport.InstallBufferPool. It is set
// in init, before any gRPC code runs, because the setting is process-wide.
func init() { transport.InstallBufferPool() }

// logged logs the errors a caller only sees as "internal error", with the
// job and the peer, so that the cause is in the journal.
type logged struct {
	logdapi.Logd
	log zerolog.Logger
}

func (l logged) Append(ctx context.Context, jobID string, recs []logdapi.Record, eof bool) (int64, error) {
	n, err := l.Logd.Append(ctx, jobID, recs, eof)
	l.check(ctx, "Append", jobID, err)
	return n, err
}

func (l logged) Read(ctx context.Context, jobID string, offset int64, follow bool, fn func(logdapi.Record) error) error {
	err := l.Logd.Read(ctx, jobID, offset, follow, fn)
	l.check(ctx, "Read", jobID, err)
	return err
}

func (l logged) Drain(ctx context.Context, jobID string, pipes []logdapi.Pipe) (int64, error) {
	n, err := l.Logd.(logdapi.Drainer).Drain(ctx, jobID, pipes)
	l.check(ctx, "Drain", jobID, err)
	return n, err
}

func (l logged) Stat(ctx context.Context, jobID string) (logdapi.Stat, error) {
	s, err := l.Logd.Stat(ctx, jobID)
	l.check(ctx, "Stat", jobID, err)
	return s, err
}

// known are the errors a caller is told about as they are.
var known = []error{
	errdefs.ErrNotFound, errdefs.ErrInvalidArgument, errdefs.ErrPermissionDenied,
	errdefs.ErrAlreadyExists, errdefs.ErrFailedPrecondition, errdefs.ErrResourceExhausted,
	errdefs.ErrUnavailable, errdefs.ErrUnauthenticated, context.Canceled, context.DeadlineExceeded,
}

func (l logged) check(ctx context.Context, method, jobID string, err error) {
	if err == nil {
		return
	}
	for _, k := range known {
		if errors.Is(err, k) {
			return
		}
	}
	if ctx.Err() != nil {
		return // the caller went away mid-send
	}
	l.log.Error().Err(err).Str(logging.KeyMethod, method).Str(logging.KeyJobID, jobID).
		Int(logging.KeyPeerUID, transport.PeerUID(ctx)).Msg("request failed")
}

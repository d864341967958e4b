// Package service wires the isolator daemon: the job registry, the job
// cgroups and limit policy, the logd client its jobs' output goes to, and
// the gRPC server that serves the isolator API on the isolator's Unix
// socket.
package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/joblet-dev/joblet/isolator/cgroup"
	"github.com/joblet-dev/joblet/isolator/jobs"
	"github.com/joblet-dev/joblet/isolator/limits"
	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/isolator/shim"
	"github.com/joblet-dev/joblet/isolator/workspace"
	"github.com/joblet-dev/joblet/proto/config"
	"github.com/joblet-dev/joblet/proto/daemon"
	"github.com/joblet-dev/joblet/proto/isolatorapi"
	"github.com/joblet-dev/joblet/proto/logdapi"
	"github.com/joblet-dev/joblet/proto/netdapi"
	"github.com/joblet-dev/joblet/proto/schedulerapi"
	"github.com/joblet-dev/joblet/proto/transport"
)

// outputTimeout bounds how long an ended job waits for logd to take the
// rest of its output.
const outputTimeout = 30 * time.Second

// netdReconnect is how the connection to netd is made again after netd
// went away: tries from 100 ms apart, growing to at most a second.
var netdReconnect = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
	MinConnectTimeout: 5 * time.Second,
}

// drainTimeout bounds how long in-flight calls may take once the jobs have
// been stopped at shutdown.
const drainTimeout = 5 * time.Second

// Run is the isolator daemon: it serves the isolator API on env.Listener
// until ctx is done, then returns, leaving running jobs to their shims
// (stopping them with joblet.stopJobsOnExit).
func Run(ctx context.Context, env daemon.Env) error {
	cfg := env.Config
	if err := useInitBinary(env.Log); err != nil {
		return err
	}
	runner, err := newShimRunner(filepath.Join(cfg.StateDir("isolator"), "shims"), cfg.SocketPath("logd"), outputTimeout)
	if err != nil {
		return err
	}
	// After run: no job starts any more, so the waiting shims can go.
	defer runner.Close()
	return run(ctx, env, runner)
}

func run(ctx context.Context, env daemon.Env, runner jobs.Runner) error {
	cfg, log := env.Config, env.Log
	host, err := limits.DetectHost()
	if err != nil {
		return err
	}
	policy := limits.DefaultsFromConfig(cfg.Joblet)
	if err := policy.Validate(host); err != nil {
		return fmt.Errorf("job limits in the configuration: %w", err)
	}
	userNS, err := userNamespace(cfg.Joblet.UserNamespace)
	if err != nil {
		return err
	}
	cg, err := cgroup.NewParent(log, cgroup.Options{
		Name: cgroupName(cfg), Driver: cfg.Joblet.CgroupDriver, Slice: cfg.Joblet.CgroupSlice,
	})
	if err != nil {
		return fmt.Errorf("job cgroups: %w", err)
	}
	defer func() {
		remove := cg.Remove
		if !cfg.Joblet.StopJobsOnExit {
			// Jobs left running keep their cgroups under the parent.
			remove = cg.RemoveIfUnused
		}
		if err := remove(); err != nil {
			log.Error().Err(err).Msg("cannot remove the job cgroups")
		}
	}()
	// On cgroup v1 the waiting shims wait in spare cgroups that become
	// their jobs' (see cgroups): stopped before the parent is removed.
	var pool *shim.Pool
	if sr, ok := runner.(shimRunner); ok {
		if pool, err = sr.useSpares(cg); err != nil {
			return fmt.Errorf("job cgroups: %w", err)
		}
		defer sr.Close()
	}
	// Dial does not wait for logd: it may start after the isolator or
	// restart at any time, and output delivery retries until it is back.
	cc, err := transport.Dial(cfg.SocketPath("logd"))
	if err != nil {
		return fmt.Errorf("logd client: %w", err)
	}
	defer cc.Close()
	// Nor for the scheduler: a job scheduled while it is down is refused
	// as unavailable, and it calls StartScheduled when it is back.
	sc, err := transport.Dial(cfg.SocketPath("scheduler"))
	if err != nil {
		return fmt.Errorf("scheduler client: %w", err)
	}
	defer sc.Close()
	// Nor for netd: a job started while it is down waits a little for it
	// (jobs/network.go), and detaches are retried until it is back. The
	// socket is local and netd is back within a second after a crash, so
	// the reconnect backoff is short: a job waits for netd, not for the
	// channel's next try.
	nc, err := transport.Dial(cfg.SocketPath("netd"), grpc.WithConnectParams(netdReconnect))
	if err != nil {
		return fmt.Errorf("netd client: %w", err)
	}
	defer nc.Close()

	grace := cfg.Joblet.StopGracePeriod
	if grace <= 0 {
		grace = 10 * time.Second
	}
	reg, err := jobs.Open(jobs.Options{
		StateDir:      cfg.StateDir("isolator"),
		Runner:        runner,
		Cgroups:       cgroups{Parent: cg, pool: pool},
		Limits:        policy,
		Host:          host,
		Logd:          logdapi.NewClient(cc),
		Scheduler:     schedulerapi.NewClient(sc),
		Netd:          netdapi.NewClient(nc),
		StopGrace:     grace,
		MaxRunning:    cfg.Joblet.MaxConcurrentJobs,
		LeaveRunning:  !cfg.Joblet.StopJobsOnExit,
		OutputTimeout: outputTimeout,
		Log:           log,
		Uploads:       workspace.Limits{MaxFileBytes: cfg.Uploads.MaxFileBytes, MaxTotalBytes: cfg.Uploads.MaxTotalBytes},
		Workspace:     jobs.Storage{MaxBytes: cfg.Joblet.Workspace.MaxBytes, MaxInodes: cfg.Joblet.Workspace.MaxInodes},
		Tmp:           jobs.Storage{MaxBytes: cfg.Joblet.Tmp.MaxBytes, MaxInodes: cfg.Joblet.Tmp.MaxInodes},
		WorkDisks:     workDisks{},
		UserNS:        userNS,
	})
	if err != nil {
		return fmt.Errorf("open job registry: %w", err)
	}
	// Job cgroups an earlier isolator left, but for the jobs the registry
	// adopted (running on under their shims): their processes are killed.
	running := reg.RunningIDs()
	if err := cg.CleanupExcept(func(id string) bool { return running[id] }); err != nil {
		return fmt.Errorf("job cgroups: %w", err)
	}

	srv := grpc.NewServer(
		grpc.Creds(transport.PeerCreds(cfg.Gateway.UID)),
		grpc.ChainUnaryInterceptor(logCalls(log), rootOnly),
	)
	isolatorapi.Register(srv, reg)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(env.Listener) }()
	log.Info().Str("socket", env.Listener.Addr().String()).Msg("isolator ready")

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
		serveErr = fmt.Errorf("serve: %w", serveErr)
	}

	// New jobs are refused; running ones are stopped and recorded STOPPED
	// (joblet.stopJobsOnExit: nothing may be left behind), or left running
	// under their shims for the next isolator to adopt; then in-flight
	// calls finish.
	hs.Shutdown()
	log.Info().Bool("stop_jobs", cfg.Joblet.StopJobsOnExit).Msg("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), grace+outputTimeout+drainTimeout)
	defer cancel()
	if err := reg.Shutdown(sctx); err != nil {
		log.Error().Err(err).Msg("jobs did not all end")
	}
	stopServer(srv, drainTimeout)
	log.Info().Msg("isolator stopped")
	return serveErr
}

// userNamespace checks joblet.userNamespace on this host and kernel, once
// at start, and returns what jobs get: nil when it is disabled.
func userNamespace(c config.UserNamespace) (*jobs.UserNS, error) {
	if !c.Enabled {
		return nil, nil
	}
	u := jobs.UserNS{HostUID: c.HostUID, HostGID: c.HostGID, Size: c.Size}
	if err := sandbox.CheckUserNS(sandbox.UserNS(u)); err != nil {
		return nil, fmt.Errorf("joblet.userNamespace: %w; fix the range, or set joblet.userNamespace.enabled: false to run jobs as the host's root with reduced capabilities", err)
	}
	return &u, nil
}

// cgroupName is the name of the parent of the job cgroups, under the
// isolator's own cgroup. Suites with different state directories (a
// developer's embedded suite, test runs, production) get different names,
// so one never takes another's job cgroups for stale ones, since job ids
// repeat across them.
func cgroupName(cfg config.Config) string {
	if cfg.Paths.StateDir == config.Default().Paths.StateDir {
		return cgroup.DefaultName
	}
	sum := sha256.Sum256([]byte(cfg.Paths.StateDir))
	return cgroup.DefaultName + "-" + hex.EncodeToString(sum[:6])
}

// stopServer lets in-flight calls finish for up to d, then cuts them off.
func stopServer(srv *grpc.Server, d time.Duration) {
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		srv.Stop()
		<-done
	}
}

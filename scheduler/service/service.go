// Package service runs the scheduler: the persisted queue of scheduled jobs,
// the loop that hands each one to the isolator when it falls due, and the
// schedulerapi served on the scheduler's Unix socket to root only (the
// isolator calls it; the gateway never does), with the standard health
// service.
package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/joblet-dev/joblet/proto/daemon"
	schedulerv1 "github.com/joblet-dev/joblet/proto/gen/scheduler/v1"
	"github.com/joblet-dev/joblet/proto/isolatorapi"
	"github.com/joblet-dev/joblet/proto/schedulerapi"
	"github.com/joblet-dev/joblet/proto/transport"
	"github.com/joblet-dev/joblet/scheduler/queue"
)

// stopGrace is how long calls in flight get to finish at shutdown.
const stopGrace = 2 * time.Second

// Run serves the scheduler on env.Listener until ctx is done.
func Run(ctx context.Context, env daemon.Env) error {
	if env.Listener == nil {
		return errors.New("the scheduler needs its socket")
	}
	dir := env.Config.StateDir("scheduler")
	q, err := queue.Load(dir)
	if err != nil {
		return fmt.Errorf("load the schedule queue: %w", err)
	}
	cc, err := transport.Dial(env.Config.SocketPath("isolator"))
	if err != nil {
		return fmt.Errorf("isolator: %w", err)
	}
	defer cc.Close()
	return serve(ctx, env, q, isolatorStarter{iso: isolatorapi.NewClient(cc)})
}

// serve runs the firing loop and the API over q until ctx is done.
func serve(ctx context.Context, env daemon.Env, q *queue.Queue, starter Starter) error {
	s := New(q, starter, Options{Log: env.Log})
	srv := grpc.NewServer(grpc.Creds(transport.PeerCreds()))
	schedulerapi.Register(srv, s)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	hs.SetServingStatus(schedulerv1.Scheduler_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)

	queued := q.Len() // read before the loop owns the queue

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	looped := make(chan struct{})
	go func() { s.Loop(ctx); close(looped) }()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(env.Listener) }()
	env.Log.Info().Str("dir", env.Config.StateDir("scheduler")).Int("queued", queued).
		Str("socket", env.Listener.Addr().String()).Msg("serving")

	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
		err = fmt.Errorf("serve: %w", err)
	}
	cancel()
	hs.Shutdown()
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(stopGrace):
		srv.Stop()
		<-stopped
	}
	<-looped
	env.Log.Info().Msg("stopped")
	return err
}

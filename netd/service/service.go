// Package service runs netd: the network manager served over gRPC on
// netd's Unix socket, to root and the gateway only, with the standard health
// service.
package service

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/joblet-dev/joblet/netd/manager"
	"github.com/joblet-dev/joblet/proto/daemon"
	netdv1 "github.com/joblet-dev/joblet/proto/gen/netd/v1"
	"github.com/joblet-dev/joblet/proto/netdapi"
	"github.com/joblet-dev/joblet/proto/transport"
)

// Run serves netd on env.Listener until ctx is done. Networks, rules and
// jobs' namespaces outlive it, and the next Run reconciles them, unless
// network.cleanupOnExit asks it to remove them from the kernel as it stops.
func Run(ctx context.Context, env daemon.Env) error {
	if env.Listener == nil {
		return errors.New("netd needs its socket")
	}
	m, err := manager.Open(manager.Options{
		RunDir:        env.Config.Paths.RunDir,
		StateDir:      env.Config.StateDir("netd"),
		CheckInterval: env.Config.Network.CheckInterval,
		Spares:        spares(env.Config.Network.ReadyNamespaces),
		Log:           env.Log,
	})
	if err != nil {
		return fmt.Errorf("open network manager: %w", err)
	}
	defer m.Close()

	srv := grpc.NewServer(grpc.Creds(transport.PeerCreds(env.Config.Gateway.UID)))
	netdapi.Register(srv, m)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	hs.SetServingStatus(netdv1.Netd_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(env.Listener) }()
	env.Log.Info().Str("socket", env.Listener.Addr().String()).Msg("serving")
	select {
	case <-ctx.Done():
	case err = <-served:
		err = fmt.Errorf("serve: %w", err)
	}
	hs.Shutdown()
	srv.GracefulStop()
	if env.Config.Network.CleanupOnExit {
		// Dev mode: leave no bridge, veth, pin or rule on the machine.
		if perr := m.Purge(); perr != nil {
			env.Log.Error().Err(perr).Msg("cannot remove every network object")
		} else {
			env.Log.Info().Msg("removed bridges, veth pairs and rules (network.cleanupOnExit)")
		}
	}
	return err
}

// spares is manager.Options.Spares for network.readyNamespaces, where 0
// means none (the manager's 0 is its default).
func spares(ready int) int {
	if ready == 0 {
		return -1
	}
	return ready
}

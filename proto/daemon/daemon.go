// Package daemon is the common main of every Joblet helper: it reads the
// config, sets up logging, gets the service's socket and runs the service
// until a signal, or until the supervisor that launched it with go-plugin
// tells it to stop.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-plugin"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"github.com/joblet-dev/joblet/proto/config"
	"github.com/joblet-dev/joblet/proto/logging"
	"github.com/joblet-dev/joblet/proto/transport"
)

// Handshake is the go-plugin handshake between the embedded-mode supervisor
// and the services it launches. Bump ProtocolVersion on incompatible change.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "JOBLET_PLUGIN",
	MagicCookieValue: "4f1c6a0e-joblet-suite",
}

// PluginName is the name every service registers under with go-plugin.
const PluginName = "service"

// Env is what a service gets to run with.
type Env struct {
	Name     string
	Config   config.Config
	Log      zerolog.Logger
	Listener net.Listener // the service's Unix socket, already listening
}

// Service runs until ctx is done and returns nil on a clean stop.
type Service func(ctx context.Context, env Env) error

// Option changes how Main runs a service.
type Option func(*options)

type options struct{ noSocket bool }

// WithoutSocket is for the gateway, which listens on TCP itself and runs
// unprivileged: Main makes no Unix socket for it and Env.Listener is nil.
func WithoutSocket() Option { return func(o *options) { o.noSocket = true } }

// Main parses the command line (--config), then runs svc. It returns the
// process exit code.
func Main(name string, svc Service, opts ...Option) int {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	cfgPath := fs.String("config", "/opt/joblet/config/joblet-config.yml", "daemon configuration file")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	log := logging.New(name, os.Stderr, "")
	if err := run(name, *cfgPath, log, svc, o); err != nil {
		log.Error().Err(err).Msg("service failed")
		return 1
	}
	return 0
}

func run(name, cfgPath string, log zerolog.Logger, svc Service, o options) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	var l net.Listener
	if !o.noSocket {
		if l, err = listen(name, cfg); err != nil {
			return err
		}
		defer l.Close()
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx = logging.With(ctx, log)
	env := Env{Name: name, Config: cfg, Log: log, Listener: l}

	if os.Getenv(Handshake.MagicCookieKey) != Handshake.MagicCookieValue {
		log.Info().Msg("starting")
		return svc(ctx, env)
	}
	// Launched by the supervisor: go-plugin owns stdout for its handshake and
	// tells us when to stop; the service runs beside it.
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc(ctx, env); cancel() }()
	go func() {
		<-ctx.Done()
		// A service that ended on its own must end the plugin too, so the
		// supervisor sees the exit and restarts it.
		select {
		case err := <-done:
			if err != nil {
				log.Error().Err(err).Msg("service failed")
				os.Exit(1)
			}
			os.Exit(0)
		default:
		}
	}()
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{PluginName: Plugin{}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func listen(name string, cfg config.Config) (net.Listener, error) {
	if err := transport.PrepareDir(cfg.Paths.RunDir, cfg.Gateway.GID); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	return transport.Listen(cfg.SocketPath(name), cfg.Gateway.GID)
}

// Plugin is the go-plugin face of a service. The service's API is on its own
// socket; the plugin connection carries go-plugin's health and shutdown only.
type Plugin struct{ plugin.NetRPCUnsupportedPlugin }

// GRPCServer implements plugin.GRPCPlugin.
func (Plugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return nil }

// GRPCClient implements plugin.GRPCPlugin.
func (Plugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return cc, nil
}

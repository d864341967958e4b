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
	"sync"
	"syscall"

	sdnotify "github.com/coreos/go-systemd/v22/daemon"
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
	// TCPListener is the TCP socket systemd passed to a service run
	// WithoutSocket (the gateway) by socket activation: the socket unit's
	// FileDescriptorName is the service's name. It is nil otherwise, and
	// the service listens itself.
	TCPListener net.Listener

	ready func()
}

// Ready tells the service manager (systemd, Type=notify) that the service
// is serving. Main does it for the service when it first accepts on
// Listener or TCPListener, so only a service serving on a listener of its
// own needs to call it. It may be called any number of times, and does
// nothing without a service manager waiting for it.
func (e Env) Ready() {
	if e.ready != nil {
		e.ready()
	}
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
	// Sockets systemd passed are taken before anything else, so that the
	// LISTEN_* variables are gone before any child process can inherit them.
	act, err := activated(name)
	if err != nil {
		return err
	}
	env := Env{Name: name, Config: cfg, Log: log}
	plugged := os.Getenv(Handshake.MagicCookieKey) == Handshake.MagicCookieValue
	if !plugged {
		env.ready = notifier(log)
	}
	switch {
	case o.noSocket && act != nil:
		env.TCPListener = readyListener{Listener: act, ready: env.Ready}
		defer act.Close()
	case o.noSocket:
	case act != nil:
		log.Info().Str("socket", act.Addr().String()).Msg("socket passed by systemd")
		env.Listener = readyListener{Listener: act, ready: env.Ready}
		defer act.Close()
	default:
		l, err := listen(name, cfg)
		if err != nil {
			return err
		}
		env.Listener = readyListener{Listener: l, ready: env.Ready}
		defer l.Close()
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx = logging.With(ctx, log)
	var profOnce sync.Once
	stopProfile := startProfiling(name, log)
	defer profOnce.Do(stopProfile)
	go ReleaseWhenIdle(ctx) // idle.go

	if !plugged {
		log.Info().Msg("starting")
		// STOPPING goes out as soon as the stop is asked for, while the
		// service winds down; the process does not exit before it is sent.
		notified := make(chan struct{})
		go func() {
			<-ctx.Done()
			notify(log, sdnotify.SdNotifyStopping)
			close(notified)
		}()
		err := svc(ctx, env)
		if ctx.Err() != nil {
			<-notified
		}
		return err
	}
	// Launched by the supervisor: go-plugin owns stdout for its handshake and
	// tells us when to stop; the service runs beside it.
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc(ctx, env); cancel() }()
	go func() {
		// However the service ends (a signal, or on its own), the process
		// ends with it: plugin.Serve would otherwise keep an empty process
		// alive, and the supervisor would neither see an exit nor restart it.
		err := <-done
		profOnce.Do(stopProfile)
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Error().Err(err).Msg("service failed")
			os.Exit(1)
		}
		os.Exit(0)
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

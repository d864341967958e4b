// Package service runs the gateway: a gRPC server on TCP with mutual TLS, the
// role table enforced on every call, the JobService forwarding to the
// isolator and logd, and the NetworkService forwarding to netd, over their
// Unix sockets.
package service

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/joblet-dev/joblet/gateway/api"
	"github.com/joblet-dev/joblet/gateway/authz"
	"github.com/joblet-dev/joblet/gateway/revocation"
	"github.com/joblet-dev/joblet/gateway/tlsconf"
	"github.com/joblet-dev/joblet/proto/config"
	"github.com/joblet-dev/joblet/proto/daemon"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/isolatorapi"
	"github.com/joblet-dev/joblet/proto/logdapi"
	"github.com/joblet-dev/joblet/proto/netdapi"
	"github.com/joblet-dev/joblet/proto/transport"
)

// On shutdown, calls in flight (log followers) get this long to finish.
const shutdownGrace = 5 * time.Second

// The power-of-two buffer pool: see transport.InstallBufferPool. It is set
// in init, before any gRPC code runs, because the setting is process-wide.
func init() { transport.InstallBufferPool() }

// logdConn is the api option that passes logs through, when b has the
// connection for it.
func logdConn(b Backends) []api.Option {
	if b.LogdConn == nil {
		return nil
	}
	return []api.Option{api.WithLogdConn(b.LogdConn)}
}

// Backends are the helpers the gateway forwards to.
type Backends struct {
	Isolator isolatorapi.Isolator
	Logd     logdapi.Logd
	Netd     netdapi.Netd
	// LogdConn, when set, is the connection behind Logd: job logs are then
	// forwarded from it without decoding (api.WithLogdConn).
	LogdConn grpc.ClientConnInterface
}

// logdWindows fix the flow-control windows of the log streams from logd.
// gRPC's default grows a stream's window with the measured bandwidth, to
// megabytes on a Unix socket, and a follower that stops reading holds a
// full window of output in the gateway: 100 stalled followers, a hundred
// of them (119 MiB measured). A fixed 256 KiB per stream is four of logd's
// chunks per round trip on a local socket: the gateway tells logd of what
// it has read every 64 KiB, each telling a write here and a read and a
// wake-up in logd (at 128 KiB, every 32 KiB: 0.1-0.2 CPU-s more per GiB
// in each). 100 stalled followers grew the gateway by 31-46 MiB with it
// (34-39 MiB at 128 KiB, up to 60 MiB at 512 KiB; TestReliabilityStalledFollowers
// allows 64). The connection's window only paces all streams together.
var logdWindows = []grpc.DialOption{
	grpc.WithInitialWindowSize(256 << 10),
	grpc.WithInitialConnWindowSize(16 << 20),
}

// writeBufferBytes is the gRPC server's write buffer on client connections.
const writeBufferBytes = 256 << 10

// Run is the gateway's daemon.Service: it dials the helpers' sockets, listens
// on the configured TCP address and serves until ctx is done.
func Run(ctx context.Context, env daemon.Env) error {
	cfg := env.Config
	if os.Geteuid() == 0 {
		env.Log.Warn().Msg("running as root; the gateway needs no privilege and should run as its own user")
	}
	iso, err := transport.Dial(cfg.SocketPath("isolator"))
	if err != nil {
		return fmt.Errorf("isolator: %w", err)
	}
	defer iso.Close()
	logd, err := transport.Dial(cfg.SocketPath("logd"), logdWindows...)
	if err != nil {
		return fmt.Errorf("logd: %w", err)
	}
	defer logd.Close()
	netd, err := transport.Dial(cfg.SocketPath("netd"))
	if err != nil {
		return fmt.Errorf("netd: %w", err)
	}
	defer netd.Close()

	// Under systemd the socket unit owns the port (socket activation).
	l := env.TCPListener
	if l == nil {
		addr := net.JoinHostPort(cfg.Server.Address, strconv.Itoa(cfg.Server.Port))
		if l, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
	}
	return Serve(ctx, l, cfg.Security, Backends{
		Isolator: isolatorapi.NewClient(iso),
		Logd:     logdapi.NewClient(logd),
		LogdConn: logd,
		Netd:     netdapi.NewClient(netd),
	}, env.Log, WithLimits(LimitsFrom(cfg.GRPC)))
}

// Limits are the gRPC server's limits: the config's grpc section
// (config.GRPC), with its defaults for fields left out.
type Limits struct {
	MaxRecvMsgSize       int
	MaxConcurrentStreams uint32
	MaxConnections       int
	HandshakeTimeout     time.Duration
	// Clients may ping no more often than this; a client that does is
	// disconnected (GOAWAY "too_many_pings").
	MinPingInterval   time.Duration
	MaxConnectionIdle time.Duration
	PingInterval      time.Duration
	PingTimeout       time.Duration
}

// LimitsFrom returns the limits the config's grpc section asks for, its
// zero fields taking the defaults. g must have passed config validation.
func LimitsFrom(g config.GRPC) Limits {
	g = g.WithDefaults()
	return Limits{
		MaxRecvMsgSize:       g.MaxRecvMsgBytes,
		MaxConcurrentStreams: uint32(g.MaxConcurrentStreams),
		MaxConnections:       g.MaxConnections,
		HandshakeTimeout:     g.HandshakeTimeout,
		MinPingInterval:      g.MinPingInterval,
		MaxConnectionIdle:    g.MaxConnectionIdle,
		PingInterval:         g.PingInterval,
		PingTimeout:          g.PingTimeout,
	}
}

// DefaultLimits returns the limits of a config without a grpc section.
func DefaultLimits() Limits { return LimitsFrom(config.GRPC{}) }

// Option changes how Serve runs the gateway.
type Option func(*options)

type options struct {
	limits         Limits
	revocationPoll time.Duration
}

// WithLimits replaces the default limits.
func WithLimits(l Limits) Option { return func(o *options) { o.limits = l } }

// WithRevocationPoll sets how often the revocation file is looked at
// (default revocation.DefaultPoll).
func WithRevocationPoll(d time.Duration) Option { return func(o *options) { o.revocationPoll = d } }

// Serve serves the gateway on l until ctx is done, then stops and returns
// nil. It closes l. With sec.RevocationFile set, the file is loaded first (a
// missing or malformed one stops the gateway from starting) and re-read
// whenever it changes while the gateway runs.
func Serve(ctx context.Context, l net.Listener, sec config.Security, b Backends, log zerolog.Logger, opts ...Option) error {
	o := options{limits: DefaultLimits(), revocationPoll: revocation.DefaultPoll}
	for _, opt := range opts {
		opt(&o)
	}
	var rev authz.Revocations // nil: no revocation file
	var tlsRev tlsconf.Revoker
	if sec.RevocationFile != "" {
		list, err := revocation.Load(sec.RevocationFile, []byte(sec.CACert))
		if err != nil {
			l.Close()
			return fmt.Errorf("security.revocationFile: %w", err)
		}
		log.Info().Str("file", sec.RevocationFile).Int("revoked", list.Len()).Msg("revocation list loaded")
		watchCtx, stopWatch := context.WithCancel(ctx)
		watched := make(chan struct{})
		go func() { list.Watch(watchCtx, o.revocationPoll, log); close(watched) }()
		defer func() { stopWatch(); <-watched }()
		rev, tlsRev = list, list
	}
	tc, err := tlsconf.Server(sec, tlsRev)
	if err != nil {
		l.Close()
		return fmt.Errorf("tls: %w", err)
	}
	srv := NewServer(tc, b, log, o.limits, rev)
	log.Info().Str("addr", l.Addr().String()).Msg("listening")

	done := make(chan error, 1)
	go func() { done <- srv.Serve(limitConns(l, o.limits.MaxConnections, log)) }() // conns.go
	select {
	case err := <-done:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(shutdownGrace):
		srv.Stop()
		<-stopped
	}
	if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info().Msg("stopped")
	return nil
}

// NewServer returns the gateway's gRPC server with the limits lim and the
// JobService and NetworkService registered behind the role interceptors,
// which also refuse certificates rev (nil: none) says are revoked.
func NewServer(tc *tls.Config, b Backends, log zerolog.Logger, lim Limits, rev authz.Revocations) *grpc.Server {
	srv := grpc.NewServer(
		grpc.Creds(loggedCreds{TransportCredentials: credentials.NewTLS(tc), log: log}),
		grpc.ChainUnaryInterceptor(authz.UnaryInterceptor(log, rev)),
		grpc.ChainStreamInterceptor(authz.StreamInterceptor(log, rev)),
		grpc.MaxRecvMsgSize(lim.MaxRecvMsgSize),
		// protobuf, with logd's log chunks passed through undecoded
		grpc.ForceServerCodecV2(api.Codec{}),
		grpc.MaxConcurrentStreams(lim.MaxConcurrentStreams),
		// Log chunks leave in writes of up to writeBufferBytes instead of
		// gRPC's 32 KiB; the buffer goes back to a pool whenever the
		// connection has nothing to write, so idle clients hold none.
		grpc.WriteBufferSize(writeBufferBytes),
		grpc.SharedWriteBuffer(true),
		grpc.ConnectionTimeout(lim.HandshakeTimeout),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             lim.MinPingInterval,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: lim.MaxConnectionIdle,
			Time:              lim.PingInterval,
			Timeout:           lim.PingTimeout,
		}),
	)
	jobletv1.RegisterJobServiceServer(srv, api.New(b.Isolator, b.Logd, logdConn(b)...))
	jobletv1.RegisterNetworkServiceServer(srv, api.NewNetworks(b.Netd))
	return srv
}

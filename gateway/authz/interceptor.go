package authz

import (
	"context"
	"crypto/x509"
	"path"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/joblet-dev/joblet/proto/errdefs"
	"github.com/joblet-dev/joblet/proto/logging"
)

// Log keys the gateway adds to the common vocabulary.
const (
	KeyPeerCN = "peer_cn"
	KeyRole   = "role"
)

// Caller is who is calling, from the verified client certificate.
type Caller struct {
	CommonName string
	Role       Role
	Cert       *x509.Certificate
}

// Revocations is the list of revoked client certificates
// (*revocation.List). The TLS handshake refuses a revoked certificate; the
// interceptors check again on every call, because a connection made before
// the revocation stays open, and they end a running stream when the list
// changes to revoke its certificate.
type Revocations interface {
	Revoked(*x509.Certificate) bool
	// Changed returns a channel closed at the next change of the list.
	Changed() <-chan struct{}
}

// errRevoked is what a call on a connection whose certificate has been
// revoked gets.
var errRevoked = errdefs.Errorf(errdefs.ErrUnauthenticated, "client certificate has been revoked")

// callerOf returns the caller of a server call on a TLS connection. Only a
// certificate that the TLS handshake verified against the CA counts.
func callerOf(ctx context.Context) (Caller, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Caller{}, errdefs.Errorf(errdefs.ErrUnauthenticated, "no peer information")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return Caller{}, errdefs.Errorf(errdefs.ErrUnauthenticated, "no verified client certificate")
	}
	leaf := ti.State.VerifiedChains[0][0]
	role, err := RoleOf(leaf)
	return Caller{CommonName: leaf.Subject.CommonName, Role: role, Cert: leaf}, err
}

// authorize finds the caller and checks the table; it returns a context
// whose logger carries the method, the caller's name and role.
func authorize(ctx context.Context, log zerolog.Logger, rev Revocations, method string) (context.Context, zerolog.Logger, Caller, error) {
	// One logger context for the call's fields: each With copies the
	// context into a new 500-byte buffer, four per call otherwise.
	lc := log.With().Str(logging.KeyMethod, method)
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		lc = lc.Str("peer_addr", p.Addr.String())
	}
	c, err := callerOf(ctx)
	if c.CommonName != "" {
		lc = lc.Str(KeyPeerCN, c.CommonName)
	}
	if err == nil && rev != nil && rev.Revoked(c.Cert) {
		err = errRevoked
	}
	if err != nil {
		l := lc.Logger()
		l.Warn().Err(err).Msg("refused: bad client identity")
		return ctx, l, c, errdefs.ToGRPC(err)
	}
	l := lc.Str(KeyRole, string(c.Role)).Logger()
	if !Allowed(c.Role, method) {
		l.Warn().Msg("refused: role may not call method")
		return ctx, l, c, errdefs.ToGRPC(errdefs.Errorf(errdefs.ErrPermissionDenied,
			"permission denied: role %q may not call %s", c.Role, path.Base(method)))
	}
	return logging.With(ctx, l), l, c, nil
}

// logDone writes one line per finished call; requests are never logged, as
// commands and their arguments may carry secrets.
func logDone(l zerolog.Logger, start time.Time, err error) {
	ev := l.Info()
	if err != nil {
		ev = l.Warn().Str("error", status.Convert(err).Message())
	}
	ev.Str("code", status.Code(err).String()).Dur("took", time.Since(start)).Msg("call")
}

// UnaryInterceptor enforces the role table and rev (nil: no revocation) on
// unary calls.
func UnaryInterceptor(log zerolog.Logger, rev Revocations) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		ctx, l, _, err := authorize(ctx, log, rev, info.FullMethod)
		if err != nil {
			return nil, err
		}
		resp, err := handler(ctx, req)
		logDone(l, start, err)
		return resp, err
	}
}

// StreamInterceptor enforces the role table and rev (nil: no revocation) on
// streaming calls. A stream whose certificate is revoked while it runs (a
// log follower can run for hours) is ended with Unauthenticated.
func StreamInterceptor(log zerolog.Logger, rev Revocations) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		ctx, l, c, err := authorize(ss.Context(), log, rev, info.FullMethod)
		if err != nil {
			return err
		}
		var revoked <-chan struct{}
		if rev != nil {
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			defer cancel()
			revoked = cutOnRevocation(ctx, cancel, rev, c.Cert)
		}
		err = handler(srv, &stream{ServerStream: ss, ctx: ctx})
		select {
		case <-revoked:
			l.Warn().Msg("stream ended: client certificate revoked")
			err = errdefs.ToGRPC(errRevoked)
		default:
		}
		logDone(l, start, err)
		return err
	}
}

// cutOnRevocation cancels a stream's context when rev changes to revoke
// cert; the returned channel is closed if it did. It stops when ctx is done.
func cutOnRevocation(ctx context.Context, cancel context.CancelFunc, rev Revocations, cert *x509.Certificate) <-chan struct{} {
	revoked := make(chan struct{})
	changed := rev.Changed()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
			changed = rev.Changed()
			if rev.Revoked(cert) {
				close(revoked)
				cancel()
				return
			}
		}
	}()
	return revoked
}

// stream hands the handler the context that carries the call's logger.
type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }

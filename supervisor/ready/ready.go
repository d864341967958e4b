// Package ready probes whether the suite accepts requests: each helper's
// socket answers gRPC, and the gateway completes a TLS handshake with a
// client certificate.
package ready

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/joblet-dev/joblet/proto/transport"
)

// pollEvery is the pause between failed probes.
const pollEvery = 100 * time.Millisecond

// Helper probes the helper socket at path once. A service that answers gRPC
// without registering the health service (Unimplemented) is answering too.
func Helper(ctx context.Context, path string) error {
	cc, err := transport.Dial(path)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := grpc_health_v1.NewHealthClient(cc).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
	switch {
	case status.Code(err) == codes.Unimplemented:
		return nil
	case err != nil:
		return fmt.Errorf("health check %s: %w", path, err)
	case resp.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING:
		return fmt.Errorf("health check %s: %s", path, resp.GetStatus())
	}
	return nil
}

// Gateway probes the gateway at addr once with a TLS handshake under cfg.
func Gateway(ctx context.Context, addr string, cfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	// Offering HTTP/2, as every gRPC client does: the gateway refuses a
	// handshake without it, and would log each probe as a refusal.
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	return c.Close()
}

// Wait retries probe until it succeeds or ctx ends, and returns the last
// error in that case.
func Wait(ctx context.Context, probe func(context.Context) error) error {
	for {
		err := probe(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-time.After(pollEvery):
		}
	}
}

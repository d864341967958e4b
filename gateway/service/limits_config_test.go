package service

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/joblet-dev/joblet/deploy/certs"
	"github.com/joblet-dev/joblet/proto/config"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// TestLimitsFromConfig: the config's grpc section reaches the server. A
// request of 8 KiB is served with the defaults and refused by a gateway
// configured with maxRecvMsgBytes: 4096.
func TestLimitsFromConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "joblet-config.yml")
	if err := os.WriteFile(p, []byte("grpc:\n  maxRecvMsgBytes: 4096\n  maxConcurrentStreams: 7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	lim := LimitsFrom(cfg.GRPC)
	want := DefaultLimits()
	want.MaxRecvMsgSize, want.MaxConcurrentStreams = 4096, 7
	if lim != want {
		t.Fatalf("limits from %s:\n got %+v\nwant %+v", p, lim, want)
	}

	req := &jobletv1.RunJobRequest{Spec: &jobletv1.JobSpec{Command: "echo", Args: []string{strings.Repeat("x", 8<<10)}}}
	run := func(g *gateway) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := g.client(t, "alice", certs.RoleAdmin).RunJob(ctx, req)
		return err
	}
	if err := run(startGateway(t)); err != nil {
		t.Fatalf("8 KiB request with the default limits: %v", err)
	}
	err = run(startGateway(t, WithLimits(lim)))
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "4096") {
		t.Fatalf("8 KiB request with maxRecvMsgBytes 4096: %v, want ResourceExhausted naming the limit", err)
	}
}

// TestDefaultLimits are today's values, which configs without a grpc
// section keep.
func TestDefaultLimits(t *testing.T) {
	want := Limits{
		MaxRecvMsgSize: 4 << 20, MaxConcurrentStreams: 256, MaxConnections: 512,
		HandshakeTimeout: 10 * time.Second, MinPingInterval: 10 * time.Second,
		MaxConnectionIdle: 15 * time.Minute, PingInterval: 2 * time.Minute, PingTimeout: 20 * time.Second,
	}
	if got := DefaultLimits(); got != want {
		t.Errorf("DefaultLimits() = %+v, want %+v", got, want)
	}
}

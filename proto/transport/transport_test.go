package transport

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func serve(t *testing.T, creds *peerCreds) string {
	t.Helper()
	dir := t.TempDir()
	path := SocketPath(dir, "svc")
	l, err := Listen(path, os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o007 != 0 {
		t.Fatalf("socket mode %v is open to others", perm)
	}
	s := grpc.NewServer(grpc.Creds(creds))
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return path
}

func check(t *testing.T, path string) error {
	cc, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, err = healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{})
	return err
}

func TestPeerAllowed(t *testing.T) {
	if err := check(t, serve(t, PeerCreds(os.Getuid()).(*peerCreds))); err != nil {
		t.Fatalf("own uid refused: %v", err)
	}
}

func TestPeerRefused(t *testing.T) {
	// Only uid 4242 may connect; this test process is not it (not even as root).
	err := check(t, serve(t, &peerCreds{allowed: []int{4242}}))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("want refusal, got %v", err)
	}
}

func TestListenReplacesStale(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.sock")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Listen(path, os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
}

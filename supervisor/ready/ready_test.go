package ready

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/joblet-dev/joblet/deploy/certs"
)

func serve(t *testing.T, register func(*grpc.Server)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "svc.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	register(s)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return path
}

func TestHelper(t *testing.T) {
	ctx := context.Background()
	hs := health.NewServer()
	serving := serve(t, func(s *grpc.Server) { grpc_health_v1.RegisterHealthServer(s, hs) })
	if err := Helper(ctx, serving); err != nil {
		t.Fatalf("serving: %v", err)
	}
	hs.SetServingStatus("", grpc_health_v1.HealthCheckResponse_NOT_SERVING)
	if err := Helper(ctx, serving); err == nil {
		t.Fatal("NOT_SERVING: want an error")
	}
	if err := Helper(ctx, serve(t, func(*grpc.Server) {})); err != nil {
		t.Fatalf("gRPC without health service: %v, want ready", err)
	}
	if err := Helper(ctx, filepath.Join(t.TempDir(), "absent.sock")); err == nil {
		t.Fatal("no socket: want an error")
	}
}

func TestGateway(t *testing.T) {
	ca, err := certs.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := ca.Server("127.0.0.1")
	cli, _ := ca.Client("c", certs.RoleAdmin)
	srvCert, _ := tls.X509KeyPair(srv.CertPEM, srv.KeyPEM)
	cliCert, _ := tls.X509KeyPair(cli.CertPEM, cli.KeyPEM)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{srvCert}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// What each handshake negotiated: the gateway (gRPC) refuses a client
	// that does not offer HTTP/2, and logs it as a refusal.
	protos := make(chan string, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if tc.Handshake() == nil {
				protos <- tc.ConnectionState().NegotiatedProtocol
			}
			c.Close()
		}
	}()
	cfg := &tls.Config{Certificates: []tls.Certificate{cliCert}, RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := Wait(ctx, func(ctx context.Context) error { return Gateway(ctx, l.Addr().String(), cfg) }); err != nil {
		t.Fatal(err)
	}
	if p := <-protos; p != "h2" {
		t.Errorf("probe negotiated %q, want h2", p)
	}
	if cfg.NextProtos != nil {
		t.Errorf("the caller's config was changed: NextProtos %q", cfg.NextProtos)
	}
	other, _ := certs.NewCA("other")
	strange := x509.NewCertPool()
	strange.AppendCertsFromPEM(other.CertPEM)
	bad := cfg.Clone()
	bad.RootCAs = strange
	if err := Gateway(ctx, l.Addr().String(), bad); err == nil {
		t.Fatal("server certificate from another CA: want an error")
	}
}

func TestWaitGivesUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	calls := 0
	err := Wait(ctx, func(context.Context) error { calls++; return net.ErrClosed })
	if err == nil || calls < 2 {
		t.Fatalf("Wait = %v after %d calls, want a timeout after retries", err, calls)
	}
}

package service

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/joblet-dev/joblet/deploy/certs"
	"github.com/joblet-dev/joblet/gateway/authz"
	"github.com/joblet-dev/joblet/gateway/internal/crltest"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// readOnly are the methods a viewer may call; written out here, apart from
// the table, so that loosening the table fails this test.
var readOnly = map[string]bool{
	jobletv1.JobService_ListJobs_FullMethodName:     true,
	jobletv1.JobService_GetJobStatus_FullMethodName: true,
	jobletv1.JobService_GetJobLogs_FullMethodName:   true,

	jobletv1.NetworkService_ListNetworks_FullMethodName: true,
}

type method struct {
	name            string
	streamed        bool
	clientStreaming bool
	serverStreaming bool
}

// registered lists every method the gateway's gRPC server serves.
func registered(t *testing.T) []method {
	t.Helper()
	srv := NewServer(&tls.Config{}, Backends{}, zerolog.Nop(), DefaultLimits(), nil)
	defer srv.Stop()
	var out []method
	for svc, info := range srv.GetServiceInfo() {
		for _, m := range info.Methods {
			out = append(out, method{
				name:            "/" + svc + "/" + m.Name,
				streamed:        m.IsClientStream || m.IsServerStream,
				clientStreaming: m.IsClientStream,
				serverStreaming: m.IsServerStream,
			})
		}
	}
	if len(out) == 0 {
		t.Fatal("no methods registered")
	}
	return out
}

// call invokes m with an empty message, whatever its real types, and returns
// the call's error. Authorization runs before a handler looks at the
// request, so this is enough to see who is let through.
func call(t *testing.T, cc *grpc.ClientConn, m method) error {
	ctx := ctxT(t)
	if !m.streamed {
		return cc.Invoke(ctx, m.name, &emptypb.Empty{}, &emptypb.Empty{})
	}
	st, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: m.clientStreaming, ServerStreams: m.serverStreaming}, m.name)
	if err != nil {
		return err
	}
	if err := st.SendMsg(&emptypb.Empty{}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := st.CloseSend(); err != nil {
		return err
	}
	for {
		if err := st.RecvMsg(&emptypb.Empty{}); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// TestEveryPublicServiceIsServed keeps the walks below complete: they go
// through what the server registered, so a service of the public API that
// the gateway forgot to register would escape them.
func TestEveryPublicServiceIsServed(t *testing.T) {
	served := map[string]bool{}
	for _, m := range registered(t) {
		served[m.name] = true
	}
	svcs := jobletv1.File_joblet_v1_joblet_proto.Services()
	for i := range svcs.Len() {
		sd := svcs.Get(i)
		for j := range sd.Methods().Len() {
			name := "/" + string(sd.FullName()) + "/" + string(sd.Methods().Get(j).Name())
			if !served[name] {
				t.Errorf("%s is in the public API but not served", name)
			}
			delete(served, name)
		}
	}
	for name := range served {
		t.Errorf("%s is served but not in the public API", name)
	}
}

func TestEveryMethodHasARule(t *testing.T) {
	for _, m := range registered(t) {
		if !authz.HasRule(m.name) {
			t.Errorf("%s has no rule in the role table", m.name)
		}
		if !authz.Allowed(authz.Admin, m.name) {
			t.Errorf("admin may not call %s", m.name)
		}
		if got := authz.Allowed(authz.Viewer, m.name); got != readOnly[m.name] {
			t.Errorf("viewer allowed %s = %v, want %v", m.name, got, readOnly[m.name])
		}
	}
}

// sendAnyway makes Go's client send its certificate even when the server's
// CA list does not name its issuer, as an attacker would.
func sendAnyway(c *tls.Config) {
	cert := c.Certificates[0]
	c.Certificates = nil
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
}

// TestWalkEveryMethod calls every registered method, unary and streaming,
// with each kind of certificate through the real TLS server: admin passes,
// viewer passes only the reads, a certificate with a bad role gets
// Unauthenticated, one the handshake refuses (none, another CA, expired,
// serverAuth only, revoked) never gets a call through, and one revoked after
// its connection was made gets Unauthenticated on that connection.
func TestWalkEveryMethod(t *testing.T) {
	g := newGateway(t)
	other, err := certs.NewCA("other CA")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.Client("mallory", certs.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := g.ca.ClientWith("old", []string{certs.RoleAdmin}, -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := certs.Template("server-only", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.Subject.OrganizationalUnit = []string{certs.RoleAdmin}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	serverOnly, err := g.ca.Issue(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	revoked := g.pair(t, "gone", certs.RoleAdmin)
	revokedLater := g.pair(t, "carol", certs.RoleAdmin)
	revFile := filepath.Join(t.TempDir(), "revoked")
	writeFile(t, revFile, []byte(crltest.Serial(t, revoked.CertPEM).Text(16)+"\n"))
	g.sec.RevocationFile = revFile
	g.serve(t, WithRevocationPoll(20*time.Millisecond))

	admin := g.conn(t, g.pair(t, "alice", certs.RoleAdmin))
	viewer := g.conn(t, g.pair(t, "bob", certs.RoleViewer))
	badRole := map[string]*grpc.ClientConn{
		"no OU":      g.conn(t, g.pair(t, "eve")),
		"two OUs":    g.conn(t, g.pair(t, "eve", certs.RoleAdmin, certs.RoleViewer)),
		"unknown OU": g.conn(t, g.pair(t, "eve", "superuser")),
	}
	refused := map[string]*grpc.ClientConn{
		"no certificate":  g.conn(t, certs.Pair{}),
		"another CA":      g.conn(t, foreign, sendAnyway),
		"expired":         g.conn(t, expired),
		"serverAuth only": g.conn(t, serverOnly),
		"revoked":         g.conn(t, revoked),
	}
	// Connected while valid, then revoked.
	later := g.conn(t, revokedLater)
	if err := call(t, later, method{name: jobletv1.JobService_ListJobs_FullMethodName}); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	writeFile(t, revFile, []byte(crltest.Serial(t, revoked.CertPEM).Text(16)+"\n"+
		crltest.Serial(t, revokedLater.CertPEM).Text(16)+"\n"))
	within(t, 5*time.Second, "revocation reloaded", func() bool {
		return status.Code(call(t, later, method{name: jobletv1.JobService_ListJobs_FullMethodName})) == codes.Unauthenticated
	})

	for _, m := range registered(t) {
		t.Run(m.name, func(t *testing.T) {
			for name, cc := range refused {
				if c := status.Code(call(t, cc, m)); c != codes.Unavailable {
					t.Errorf("%s: got %v, want the connection refused (Unavailable)", name, c)
				}
			}
			for name, cc := range badRole {
				if c := status.Code(call(t, cc, m)); c != codes.Unauthenticated {
					t.Errorf("%s: got %v, want Unauthenticated", name, c)
				}
			}
			if c := status.Code(call(t, later, m)); c != codes.Unauthenticated {
				t.Errorf("revoked after connecting: got %v, want Unauthenticated", c)
			}
			err := call(t, viewer, m)
			if readOnly[m.name] {
				if c := status.Code(err); c == codes.PermissionDenied || c == codes.Unauthenticated {
					t.Errorf("viewer refused a read: %v", err)
				}
			} else if status.Code(err) != codes.PermissionDenied {
				t.Errorf("viewer: got %v, want PermissionDenied", err)
			}
			if c := status.Code(call(t, admin, m)); c == codes.PermissionDenied || c == codes.Unauthenticated {
				t.Errorf("admin: %v", c)
			}
		})
	}
}

package service

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/joblet-dev/joblet/deploy/certs"
	"github.com/joblet-dev/joblet/gateway/internal/crltest"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// TestResumedSessionsKeepEveryCheck: clients that keep their TLS sessions
// (as rnx does between commands) resume them on new connections, and a
// resumed connection is held to what a full handshake is: the viewer's
// role still forbids RunJob, and once the viewer's certificate is revoked
// a new connection is refused in the handshake although the client offers
// a ticket the gateway issued.
func TestResumedSessionsKeepEveryCheck(t *testing.T) {
	g := newGateway(t)
	revFile := filepath.Join(t.TempDir(), "revoked")
	if err := os.WriteFile(revFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	g.sec.RevocationFile = revFile
	g.serve(t, WithRevocationPoll(50*time.Millisecond))
	ctx := ctxT(t)

	viewer := g.pair(t, "bob", certs.RoleViewer)
	admin := g.pair(t, "alice", certs.RoleAdmin)
	viewerCache := tls.NewLRUClientSessionCache(4)
	adminCache := tls.NewLRUClientSessionCache(4)
	// call makes one connection, as one rnx command does, and one call on
	// it; it reports whether the handshake resumed a session.
	call := func(p certs.Pair, cache tls.ClientSessionCache, do func(jobletv1.JobServiceClient, ...grpc.CallOption) error) (bool, error) {
		cc := g.conn(t, p, func(c *tls.Config) { c.ClientSessionCache = cache })
		defer cc.Close()
		var pr peer.Peer
		err := do(jobletv1.NewJobServiceClient(cc), grpc.Peer(&pr))
		info, ok := pr.AuthInfo.(credentials.TLSInfo)
		// The per-connection config (tlsconf's GetConfigForClient) still
		// gets gRPC's ALPN.
		if ok && info.State.NegotiatedProtocol != "h2" {
			t.Fatalf("ALPN: %q, want h2", info.State.NegotiatedProtocol)
		}
		return ok && info.State.DidResume, err
	}
	list := func(c jobletv1.JobServiceClient, opts ...grpc.CallOption) error {
		_, err := c.ListJobs(ctx, &jobletv1.ListJobsRequest{}, opts...)
		return err
	}
	run := func(c jobletv1.JobServiceClient, opts ...grpc.CallOption) error {
		_, err := c.RunJob(ctx, &jobletv1.RunJobRequest{Spec: &jobletv1.JobSpec{Command: "true"}}, opts...)
		return err
	}

	for i, want := range []bool{false, true, true} {
		resumed, err := call(viewer, viewerCache, list)
		if err != nil || resumed != want {
			t.Fatalf("viewer's connection %d: resumed=%v err=%v, want resumed=%v", i, resumed, err, want)
		}
	}
	resumed, err := call(viewer, viewerCache, run)
	if !resumed || status.Code(err) != codes.PermissionDenied {
		t.Fatalf("viewer's RunJob: resumed=%v err=%v, want PermissionDenied on a resumed session", resumed, err)
	}
	for i, want := range []bool{false, true} {
		if resumed, err := call(admin, adminCache, run); err != nil || resumed != want {
			t.Fatalf("admin's RunJob %d: resumed=%v err=%v, want resumed=%v", i, resumed, err, want)
		}
	}

	serial := crltest.Serial(t, viewer.CertPEM)
	writeFile(t, revFile, []byte(serial.Text(16)+"\n"))
	within(t, 5*time.Second, "revoked viewer refused", func() bool {
		_, err := call(viewer, viewerCache, list)
		return status.Code(err) == codes.Unavailable
	})
	// The client still holds a ticket and offers it; it is refused all the
	// same, on every try, in the handshake, as revoked.
	for range 3 {
		if cs, ok := viewerCache.Get("127.0.0.1"); !ok || cs == nil {
			t.Fatal("the viewer's client has no session to offer")
		}
		if _, err := call(viewer, viewerCache, list); status.Code(err) != codes.Unavailable {
			t.Fatalf("revoked viewer with a ticket: %v, want refused (Unavailable)", err)
		}
	}
	if !strings.Contains(g.logs.String(), fmt.Sprintf(`client certificate \"bob\" (serial %s) is revoked`, serial.Text(16))) {
		t.Fatal("the handshake's refusal as revoked is not in the log")
	}
	if resumed, err := call(admin, adminCache, list); err != nil || !resumed {
		t.Fatalf("admin after the viewer's revocation: resumed=%v err=%v", resumed, err)
	}
}

package service

import (
	"context"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/joblet-dev/joblet/deploy/certs"
	"github.com/joblet-dev/joblet/gateway/internal/crltest"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// writeFile replaces path's content the way an operator's tool would: a new
// file renamed over the old one.
func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// within polls cond until it holds or d has passed.
func within(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
	}
}

// TestRevocationWhileRunning revokes the viewer's certificate while the
// gateway runs, with the production poll interval: new connections are
// refused in the handshake within a few seconds, the viewer's open
// connection gets Unauthenticated on its next call, and its running log
// follower is ended; the admin is untouched. Removing the serial lets the
// viewer in again, with no restart.
func TestRevocationWhileRunning(t *testing.T) {
	g := newGateway(t)
	revFile := filepath.Join(t.TempDir(), "revoked")
	if err := os.WriteFile(revFile, []byte("# nothing revoked yet\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g.sec.RevocationFile = revFile
	g.serve(t)
	ctx := ctxT(t)

	admin := g.client(t, "alice", certs.RoleAdmin)
	viewerPair := g.pair(t, "bob", certs.RoleViewer)
	viewer := jobletv1.NewJobServiceClient(g.conn(t, viewerPair))
	run, err := admin.RunJob(ctx, &jobletv1.RunJobRequest{Spec: &jobletv1.JobSpec{Command: "sleep"}})
	if err != nil {
		t.Fatal(err)
	}
	id := run.GetJob().GetId()
	if _, err := viewer.ListJobs(ctx, &jobletv1.ListJobsRequest{}); err != nil {
		t.Fatalf("viewer before revocation: %v", err)
	}
	follow, err := viewer.GetJobLogs(ctx, &jobletv1.GetJobLogsRequest{Id: id, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	appendLog(t, g.logd, id, false, "x")
	if _, err := follow.Recv(); err != nil {
		t.Fatal(err)
	}

	serial := crltest.Serial(t, viewerPair.CertPEM)
	writeFile(t, revFile, []byte(fmt.Sprintf("# bob's laptop was stolen\n%s\n", serial.Text(16))))
	revokedAt := time.Now()

	// The open connection: its next call, and the running follower.
	within(t, 5*time.Second, "open connection refused", func() bool {
		_, err := viewer.ListJobs(ctx, &jobletv1.ListJobsRequest{})
		return status.Code(err) == codes.Unauthenticated && strings.Contains(status.Convert(err).Message(), "revoked")
	})
	if _, err := follow.Recv(); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("follower after revocation: %v, want Unauthenticated", err)
	}
	// A new connection: refused in the handshake, with a clear log line.
	fresh := jobletv1.NewJobServiceClient(g.conn(t, viewerPair))
	if _, err := fresh.ListJobs(ctx, &jobletv1.ListJobsRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("new connection with a revoked certificate: %v, want refused (Unavailable)", err)
	}
	within(t, 2*time.Second, "handshake refusal logged", func() bool {
		return strings.Contains(g.logs.String(), fmt.Sprintf(`client certificate \"bob\" (serial %s) is revoked`, serial.Text(16)))
	})
	t.Logf("revocation effective after %v", time.Since(revokedAt).Round(time.Millisecond))
	if _, err := admin.ListJobs(ctx, &jobletv1.ListJobsRequest{}); err != nil {
		t.Fatalf("admin after the viewer's revocation: %v", err)
	}

	// Unrevoked: new connections are accepted again.
	writeFile(t, revFile, nil)
	within(t, 5*time.Second, "unrevoked", func() bool {
		c := jobletv1.NewJobServiceClient(g.conn(t, viewerPair))
		_, err := c.ListJobs(ctx, &jobletv1.ListJobsRequest{})
		return err == nil
	})
	if _, err := viewer.ListJobs(ctx, &jobletv1.ListJobsRequest{}); err != nil {
		t.Fatalf("the old connection after unrevocation: %v", err)
	}
}

// TestRevocationByCRL revokes through a CRL signed by the CA; a CRL signed
// by another CA is refused at start-up.
func TestRevocationByCRL(t *testing.T) {
	g := newGateway(t)
	bad := g.pair(t, "mallory", certs.RoleAdmin)
	revFile := filepath.Join(t.TempDir(), "crl.pem")
	writeFile(t, revFile, crltest.CRL(t, g.ca, crltest.Serial(t, bad.CertPEM), big.NewInt(12345)))
	g.sec.RevocationFile = revFile
	g.serve(t, WithRevocationPoll(50*time.Millisecond))

	ctx := ctxT(t)
	if _, err := jobletv1.NewJobServiceClient(g.conn(t, bad)).ListJobs(ctx, &jobletv1.ListJobsRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("certificate in the CRL: %v, want refused", err)
	}
	if _, err := g.client(t, "alice", certs.RoleAdmin).ListJobs(ctx, &jobletv1.ListJobsRequest{}); err != nil {
		t.Fatalf("certificate not in the CRL: %v", err)
	}

	other, err := certs.NewCA("other CA")
	if err != nil {
		t.Fatal(err)
	}
	// A gateway whose revocation file cannot be trusted does not start.
	g2 := newGateway(t)
	forged := filepath.Join(t.TempDir(), "crl.pem")
	writeFile(t, forged, crltest.CRL(t, other))
	g2.sec.RevocationFile = forged
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	err = Serve(context.Background(), l, g2.sec, Backends{}, zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), "not signed by the CA") {
		t.Fatalf("Serve with another CA's CRL: %v", err)
	}
}

package service

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/joblet-dev/joblet/deploy/certs"
	"github.com/joblet-dev/joblet/gateway/internal/crltest"
	"github.com/joblet-dev/joblet/proto/clientconfig"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// TestRevokeCommandWhileRunning: the operator's `joblet-certs revoke`, given
// a viewer's client config, makes a running gateway refuse that viewer,
// on its open connection and on new ones, without a restart; another
// viewer is unaffected.
func TestRevokeCommandWhileRunning(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH; cannot build joblet-certs")
	}
	tool := filepath.Join(t.TempDir(), "joblet-certs")
	if out, err := exec.Command(goBin, "build", "-o", tool, "github.com/joblet-dev/joblet/deploy/cmd/joblet-certs").CombinedOutput(); err != nil {
		t.Fatalf("build joblet-certs: %v\n%s", err, out)
	}

	g := newGateway(t)
	dir := t.TempDir()
	revFile := filepath.Join(dir, "revoked")
	if err := os.WriteFile(revFile, []byte("# revoked client certificates\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g.sec.RevocationFile = revFile
	g.serve(t)
	ctx := ctxT(t)

	bobPair := g.pair(t, "bob", certs.RoleViewer)
	bob := jobletv1.NewJobServiceClient(g.conn(t, bobPair))
	carol := g.client(t, "carol", certs.RoleViewer)
	for _, c := range []jobletv1.JobServiceClient{bob, carol} {
		if _, err := c.ListJobs(ctx, &jobletv1.ListJobsRequest{}); err != nil {
			t.Fatalf("before revocation: %v", err)
		}
	}
	// bob's rnx config, as `joblet-certs client` hands it out.
	bobConfig := filepath.Join(dir, "rnx-bob.yml")
	err = clientconfig.Save(&clientconfig.Config{Version: "1", Nodes: map[string]*clientconfig.Node{
		clientconfig.DefaultNode: {Address: g.addr, Cert: string(bobPair.CertPEM), Key: string(bobPair.KeyPEM), CA: string(g.ca.CertPEM)},
	}}, bobConfig)
	if err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(tool, "revoke", "--cert", bobConfig, "--file", revFile).CombinedOutput()
	serial := crltest.Serial(t, bobPair.CertPEM).Text(16)
	if err != nil || !strings.Contains(string(out), "revoked serial "+serial) {
		t.Fatalf("joblet-certs revoke: %v\n%s", err, out)
	}
	revokedAt := time.Now()
	within(t, 5*time.Second, "open connection refused", func() bool {
		_, err := bob.ListJobs(ctx, &jobletv1.ListJobsRequest{})
		return status.Code(err) == codes.Unauthenticated && strings.Contains(status.Convert(err).Message(), "revoked")
	})
	fresh := jobletv1.NewJobServiceClient(g.conn(t, bobPair))
	if _, err := fresh.ListJobs(ctx, &jobletv1.ListJobsRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("new connection with the revoked certificate: %v, want refused in the handshake", err)
	}
	t.Logf("revocation by joblet-certs effective after %v", time.Since(revokedAt).Round(time.Millisecond))
	if _, err := carol.ListJobs(ctx, &jobletv1.ListJobsRequest{}); err != nil {
		t.Fatalf("another viewer after bob's revocation: %v", err)
	}

	// Again, by serial: already listed, the file is left as it was.
	before, _ := os.ReadFile(revFile)
	out, err = exec.Command(tool, "revoke", "--serial", serial, "--file", revFile).CombinedOutput()
	if after, _ := os.ReadFile(revFile); err != nil || !strings.Contains(string(out), "already revoked") || string(after) != string(before) {
		t.Fatalf("revoking again: %v\n%s\nfile %q -> %q", err, out, before, after)
	}
	// Mistakes are refused with a clear message, and change nothing.
	for _, args := range [][]string{
		{"revoke", "--file", revFile},
		{"revoke", "--serial", "xyz", "--file", revFile},
		{"revoke", "--cert", filepath.Join(dir, "missing.pem"), "--file", revFile},
	} {
		out, err := exec.Command(tool, args...).CombinedOutput()
		if after, _ := os.ReadFile(revFile); err == nil || !strings.HasPrefix(string(out), "joblet-certs: ") || string(after) != string(before) {
			t.Errorf("joblet-certs %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

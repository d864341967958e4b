package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/joblet-dev/joblet/deploy/certs"
	"github.com/joblet-dev/joblet/proto/clientconfig"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

func TestViewerReadsButCannotChange(t *testing.T) {
	needSuite(t)
	done, _ := mustRun(t, "echo", "viewer-can-read")
	running := detach(t, "sleep", "30")
	t.Cleanup(func() { rnx(t, "stop", running) })
	before := len(listJSON(t))

	if r := rnxViewer(t, "list"); r.code != 0 || !strings.Contains(r.stdout, done) {
		t.Errorf("viewer: rnx list: want exit 0 and job %s listed; got %v", done, r)
	}
	if r := rnxViewer(t, "status", done); r.code != 0 || !strings.Contains(r.stdout, "Job ID: "+done) {
		t.Errorf("viewer: rnx status %s: want exit 0 and the job; got %v", done, r)
	}
	if r := rnxViewer(t, "log", done); r.code != 0 || r.stdout != "viewer-can-read\n" {
		t.Errorf("viewer: rnx log %s: want exit 0 and the output; got %v", done, r)
	}

	denied := func(what string, r result) {
		t.Helper()
		msg := strings.ToLower(r.stderr)
		if r.code == 0 || !strings.Contains(msg, "permission denied") || !strings.Contains(msg, "viewer") {
			t.Errorf("viewer: %s: want non-zero exit and `permission denied` naming `viewer`; got %v", what, r)
		}
		oneLine(t, "viewer: "+what, r.stderr)
	}
	denied("rnx run echo hi", rnxViewer(t, "run", "echo", "hi"))
	denied("rnx run -d echo hi", rnxViewer(t, "run", "-d", "echo", "hi"))
	denied("rnx stop "+running, rnxViewer(t, "stop", running))

	if after := len(listJSON(t)); after != before {
		t.Errorf("viewer's refused run still made a job: %d jobs before, %d after", before, after)
	}
	if got := jobStatus(t, running); got != "RUNNING" {
		t.Errorf("viewer's refused stop still stopped job %s: %s", running, got)
	}
}

// adminNode is the default node of the dev admin config.
func adminNode(t *testing.T) *clientconfig.Node {
	t.Helper()
	c, err := clientconfig.Load(theSuite.adminConfig())
	if err != nil {
		t.Fatal(err)
	}
	names := c.Names()
	if len(names) == 0 {
		t.Fatal("admin config has no node")
	}
	n, err := c.Node(clientconfig.DefaultNode)
	if err != nil {
		n = c.Nodes[names[0]]
	}
	return n
}

// writeConfig saves a one-node client config in the test's temp dir.
func writeConfig(t *testing.T, n clientconfig.Node) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rnx.yml")
	c := &clientconfig.Config{Version: "1", Nodes: map[string]*clientconfig.Node{clientconfig.DefaultNode: &n}}
	if err := clientconfig.Save(c, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// refused fails unless rnx failed with one clear line and no stack trace.
func refused(t *testing.T, what string, r result, words ...string) {
	t.Helper()
	msg := strings.ToLower(r.stderr)
	if r.code == 0 || strings.Contains(msg, "goroutine ") || strings.Contains(msg, "panic") {
		t.Errorf("%s: want a refusal with a non-zero exit; got %v", what, r)
		return
	}
	oneLine(t, what, r.stderr)
	for _, w := range words {
		if strings.Contains(msg, w) {
			return
		}
	}
	t.Errorf("%s: the error should say what is wrong (one of %q); got %q", what, words, r.stderr)
}

func TestCertificateFromAnotherCAIsRefused(t *testing.T) {
	needSuite(t)
	other, err := certs.NewCA("someone else's CA")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := other.Client("intruder", certs.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	n := *adminNode(t)
	n.Cert, n.Key = string(pair.CertPEM), string(pair.KeyPEM)
	cfg := writeConfig(t, n)
	for _, args := range [][]string{{"list"}, {"run", "echo", "hi"}} {
		refused(t, "another CA: rnx "+strings.Join(args, " "), rnxWith(t, cfg, args...),
			"certificate", "tls", "authenticat")
	}
}

func TestNoClientCertificateIsRefused(t *testing.T) {
	needSuite(t)
	n := *adminNode(t)
	n.Cert, n.Key = "", ""
	refused(t, "no client certificate: rnx list", rnxWith(t, writeConfig(t, n), "list"),
		"certificate", "cert", "tls", "authenticat")

	// rnx may refuse such a config itself; the gateway must refuse the
	// connection too.
	tlsCfg := serverTLS(t, n)
	_, err := listJobsOver(t, n.Address, tlsCfg)
	if err == nil {
		t.Errorf("gateway answered ListJobs over TLS without a client certificate")
	}
}

func TestTLSBelow13IsRefused(t *testing.T) {
	needSuite(t)
	n := *adminNode(t)
	cfg := serverTLS(t, n)
	pair, err := tls.X509KeyPair([]byte(n.Cert), []byte(n.Key))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Certificates = []tls.Certificate{pair}
	// The same client, valid certificate and all, answers with 1.3.
	if _, err := listJobsOver(t, n.Address, cfg.Clone()); err != nil {
		t.Fatalf("gateway refused a valid admin client over TLS 1.3: %v", err)
	}
	cfg.MaxVersion = tls.VersionTLS12
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", n.Address, cfg)
	if err == nil {
		conn.Close()
		t.Errorf("gateway accepted a TLS 1.2 handshake")
	}
}

// serverTLS trusts the node's CA and nothing else, with no client certificate.
func serverTLS(t *testing.T, n clientconfig.Node) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(n.CA)) {
		t.Fatal("admin config: no CA certificate")
	}
	host, _, err := net.SplitHostPort(n.Address)
	if err != nil {
		t.Fatalf("admin config address %q: %v", n.Address, err)
	}
	return &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
}

// listJobsOver calls ListJobs directly over gRPC with the given TLS config.
func listJobsOver(t *testing.T, addr string, cfg *tls.Config) (*jobletv1.ListJobsResponse, error) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return jobletv1.NewJobServiceClient(cc).ListJobs(ctx, &jobletv1.ListJobsRequest{})
}

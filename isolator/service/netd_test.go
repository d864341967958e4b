package service

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/joblet-dev/joblet/proto/config"
	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/netdapi"
	"github.com/joblet-dev/joblet/proto/transport"
)

// memNetd stands in for netd on its socket without touching the kernel:
// "none" and "bridge" exist, an attachment has no prepared namespace (the
// sandbox then makes a fresh one with loopback only), and every attached
// job must be detached again.
type memNetd struct {
	mu       sync.Mutex
	attached map[string]string // job id → network
	detached map[string]bool
}

func serveNetd(t *testing.T, cfg config.Config) *memNetd {
	t.Helper()
	n := &memNetd{attached: map[string]string{}, detached: map[string]bool{}}
	l, err := transport.Listen(cfg.SocketPath("netd"), 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	netdapi.Register(srv, n)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return n
}

func (n *memNetd) Attach(_ context.Context, id, network, name string) (netdapi.Attachment, error) {
	if network != netdapi.Bridge && network != netdapi.None {
		return netdapi.Attachment{}, errdefs.Errorf(errdefs.ErrNotFound, "network %q does not exist", network)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.attached[id] = network
	host := name
	if host == "" {
		host = "job-" + id
	}
	return netdapi.Attachment{JobID: id, Network: network, Hostname: host,
		Hosts: "127.0.0.1\tlocalhost\n127.0.1.1\t" + host + "\n"}, nil
}

func (n *memNetd) Detach(_ context.Context, id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.attached, id)
	n.detached[id] = true
	return nil
}

func (n *memNetd) CreateNetwork(context.Context, string, string) (netdapi.Network, error) {
	return netdapi.Network{}, errdefs.Errorf(errdefs.ErrFailedPrecondition, "not in this fake")
}
func (n *memNetd) ListNetworks(context.Context) ([]netdapi.Network, error) { return nil, nil }
func (n *memNetd) RemoveNetwork(context.Context, string) error             { return nil }

// left lists the jobs still attached.
func (n *memNetd) left() map[string]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]string{}
	for id, net := range n.attached {
		out[id] = net
	}
	return out
}

// A job's network comes from netd and goes back to it when the job ends;
// a network netd does not know is refused with a clear error.
func TestNetworkThroughNetd(t *testing.T) {
	s := startSuite(t, testConfig(t))
	ctx := context.Background()
	j, err := s.client.Run(ctx, &jobletv1.JobSpec{Command: "sh", Args: []string{"-c", "hostname; cat /etc/hosts"}, Name: "api"})
	if err != nil {
		t.Fatal(err)
	}
	if j.GetNetwork() != netdapi.Bridge || j.GetHostname() != "api" {
		t.Fatalf("record %v", j)
	}
	end, out := s.ended(j.GetId())
	if end.GetState() != jobletv1.JobState_JOB_STATE_COMPLETED || out != "api\n127.0.0.1\tlocalhost\n127.0.1.1\tapi\n" {
		t.Fatalf("record %v, output %q", end, out)
	}
	for deadline := time.Now().Add(5 * time.Second); len(s.netd.left()) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still attached: %v", s.netd.left())
		}
	}
	_, err = s.client.Run(ctx, &jobletv1.JobSpec{Command: "true", Network: "nope"})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), `network "nope" does not exist`) {
		t.Fatalf("unknown network: %v", err)
	}
}

package service

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"

	"github.com/joblet-dev/joblet/proto/errdefs"
	"github.com/joblet-dev/joblet/proto/netdapi"
	"github.com/joblet-dev/joblet/proto/transport"
)

// fake is a Netd that records calls and fails on request.
type fake struct{ err error }

func (f fake) Attach(_ context.Context, id, network, name string) (netdapi.Attachment, error) {
	return netdapi.Attachment{JobID: id, Network: network, Hostname: name, NetnsPath: "/run/joblet/netns/" + id,
		IP: "10.0.0.2", Gateway: "10.0.0.1", ResolvConf: "nameserver 10.0.0.1\n", Hosts: "h"}, f.err
}
func (f fake) Detach(context.Context, string) error { return f.err }
func (f fake) CreateNetwork(_ context.Context, name, cidr string) (netdapi.Network, error) {
	return netdapi.Network{Name: name, CIDR: cidr, Bridge: "joblet-" + name, Jobs: 3}, f.err
}
func (f fake) ListNetworks(context.Context) ([]netdapi.Network, error) {
	return []netdapi.Network{{Name: "none", Builtin: true}, {Name: "bridge", CIDR: "172.20.0.0/16", Bridge: "joblet0", Builtin: true}}, f.err
}
func (f fake) RemoveNetwork(context.Context, string) error { return f.err }

func client(t *testing.T, impl netdapi.Netd) netdapi.Netd {
	t.Helper()
	path := filepath.Join(t.TempDir(), "netd.sock")
	l, err := transport.Listen(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(transport.PeerCreds()))
	netdapi.Register(srv, impl)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	cc, err := transport.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return netdapi.NewClient(cc)
}

func TestAPIRoundTrip(t *testing.T) {
	c := client(t, fake{})
	ctx := context.Background()
	a, err := c.Attach(ctx, "7", "apps", "api")
	want := netdapi.Attachment{JobID: "7", Network: "apps", Hostname: "api", NetnsPath: "/run/joblet/netns/7",
		IP: "10.0.0.2", Gateway: "10.0.0.1", ResolvConf: "nameserver 10.0.0.1\n", Hosts: "h"}
	if err != nil || a != want {
		t.Fatalf("attach: %+v %v", a, err)
	}
	n, err := c.CreateNetwork(ctx, "apps", "10.0.0.0/24")
	if err != nil || n != (netdapi.Network{Name: "apps", CIDR: "10.0.0.0/24", Bridge: "joblet-apps", Jobs: 3}) {
		t.Fatalf("create: %+v %v", n, err)
	}
	nets, err := c.ListNetworks(ctx)
	if err != nil || len(nets) != 2 || nets[1].Bridge != "joblet0" || !nets[0].Builtin {
		t.Fatalf("list: %+v %v", nets, err)
	}
	if err := c.Detach(ctx, "7"); err != nil {
		t.Fatal(err)
	}
}

func TestAPIErrorsKeepTheirKind(t *testing.T) {
	for _, kind := range []error{errdefs.ErrNotFound, errdefs.ErrInvalidArgument, errdefs.ErrFailedPrecondition,
		errdefs.ErrResourceExhausted, errdefs.ErrAlreadyExists} {
		c := client(t, fake{err: errdefs.Errorf(kind, "network %q: nope", "x")})
		ctx := context.Background()
		_, aerr := c.Attach(ctx, "1", "x", "")
		_, cerr := c.CreateNetwork(ctx, "x", "10.0.0.0/24")
		_, lerr := c.ListNetworks(ctx)
		for _, err := range []error{aerr, cerr, lerr, c.Detach(ctx, "1"), c.RemoveNetwork(ctx, "x")} {
			if !errors.Is(err, kind) || err.Error() != `network "x": nope` {
				t.Errorf("%v: got %v", kind, err)
			}
		}
	}
	// Internal errors do not cross the socket.
	c := client(t, fake{err: errors.New("netlink: secret detail")})
	if err := c.Detach(context.Background(), "1"); err == nil || err.Error() == "netlink: secret detail" {
		t.Errorf("internal error leaked: %v", err)
	}
}

// network.readyNamespaces' 0 turns the namespaces made ahead off; the
// manager's own 0 would be its default.
func TestSparesFromConfig(t *testing.T) {
	for ready, want := range map[int]int{0: -1, 1: 1, 2: 2, 64: 64} {
		if got := spares(ready); got != want {
			t.Errorf("readyNamespaces %d: Spares %d, want %d", ready, got, want)
		}
	}
}

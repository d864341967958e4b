package service

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/joblet-dev/joblet/deploy/certs"
	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

func (g *gateway) networks(t *testing.T, cn string, ous ...string) jobletv1.NetworkServiceClient {
	return jobletv1.NewNetworkServiceClient(g.conn(t, g.pair(t, cn, ous...)))
}

func names(nets []*jobletv1.Network) string {
	var out []string
	for _, n := range nets {
		out = append(out, n.GetName())
	}
	return strings.Join(out, " ")
}

func TestAdminManagesNetworks(t *testing.T) {
	g := startGateway(t)
	c := g.networks(t, "alice", certs.RoleAdmin)
	ctx := ctxT(t)

	created, err := c.CreateNetwork(ctx, &jobletv1.CreateNetworkRequest{Name: "backend", Cidr: "10.1.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	want := &jobletv1.Network{Name: "backend", Cidr: "10.1.0.0/24", Bridge: "joblet-backend"}
	if n := created.GetNetwork(); n.GetName() != want.Name || n.GetCidr() != want.Cidr || n.GetBridge() != want.Bridge || n.GetBuiltin() {
		t.Fatalf("created %v, want %v", n, want)
	}
	if _, err := c.CreateNetwork(ctx, &jobletv1.CreateNetworkRequest{Name: "analytics", Cidr: "192.168.100.0/24"}); err != nil {
		t.Fatal(err)
	}
	g.netd.SetJobs("bridge", 3)
	list, err := c.ListNetworks(ctx, &jobletv1.ListNetworksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(list.GetNetworks()); got != "none bridge isolated analytics backend" {
		t.Fatalf("list: %s", got)
	}
	br := list.GetNetworks()[1]
	if br.GetCidr() != "172.20.0.0/16" || br.GetBridge() != "joblet0" || br.GetJobs() != 3 || !br.GetBuiltin() {
		t.Fatalf("bridge: %v", br)
	}

	if _, err := c.RemoveNetwork(ctx, &jobletv1.RemoveNetworkRequest{Name: "analytics"}); err != nil {
		t.Fatal(err)
	}
	list, err = c.ListNetworks(ctx, &jobletv1.ListNetworksRequest{})
	if err != nil || names(list.GetNetworks()) != "none bridge isolated backend" {
		t.Fatalf("after remove: %s %v", names(list.GetNetworks()), err)
	}

	out := g.logs.String()
	for _, want := range []string{`"method":"/joblet.v1.NetworkService/CreateNetwork"`, `"network":"backend"`, `"message":"network removed"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

func TestViewerListsNetworksOnly(t *testing.T) {
	g := startGateway(t)
	ctx := ctxT(t)
	admin := g.networks(t, "alice", certs.RoleAdmin)
	if _, err := admin.CreateNetwork(ctx, &jobletv1.CreateNetworkRequest{Name: "backend", Cidr: "10.1.0.0/24"}); err != nil {
		t.Fatal(err)
	}

	v := g.networks(t, "bob", certs.RoleViewer)
	list, err := v.ListNetworks(ctx, &jobletv1.ListNetworksRequest{})
	if err != nil || names(list.GetNetworks()) != "none bridge isolated backend" {
		t.Fatalf("viewer list: %s %v", names(list.GetNetworks()), err)
	}
	_, err = v.CreateNetwork(ctx, &jobletv1.CreateNetworkRequest{Name: "frontend", Cidr: "10.2.0.0/24"})
	wantCode(t, err, codes.PermissionDenied, `permission denied: role "viewer" may not call CreateNetwork`)
	_, err = v.RemoveNetwork(ctx, &jobletv1.RemoveNetworkRequest{Name: "backend"})
	wantCode(t, err, codes.PermissionDenied, `permission denied: role "viewer" may not call RemoveNetwork`)

	list, err = admin.ListNetworks(ctx, &jobletv1.ListNetworksRequest{})
	if err != nil || names(list.GetNetworks()) != "none bridge isolated backend" {
		t.Fatalf("the viewer's refused calls changed the networks: %s %v", names(list.GetNetworks()), err)
	}
}

func TestNetworkErrorsReachTheClientMapped(t *testing.T) {
	g := startGateway(t)
	c := g.networks(t, "alice", certs.RoleAdmin)
	ctx := ctxT(t)
	if _, err := c.CreateNetwork(ctx, &jobletv1.CreateNetworkRequest{Name: "backend", Cidr: "10.1.0.0/24"}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, net, cidr string
		code            codes.Code
		msg             string
	}{
		// Refused by the gateway before netd is asked.
		{"no name", "", "10.2.0.0/24", codes.InvalidArgument, "network name is required"},
		{"upper case", "Backend", "10.2.0.0/24", codes.InvalidArgument, `network name "Backend": use 1 to 32 lowercase letters`},
		{"too long", strings.Repeat("a", 33), "10.2.0.0/24", codes.InvalidArgument, `"` + strings.Repeat("a", 32) + `..."`},
		{"no CIDR", "frontend", "", codes.InvalidArgument, "CIDR is required"},
		{"huge CIDR", "frontend", strings.Repeat("1", 1000), codes.InvalidArgument, "CIDR too long"},
		// Refused by netd, its message passed on.
		{"exists", "backend", "10.2.0.0/24", codes.AlreadyExists, `network "backend" exists already`},
		{"overlap", "frontend", "10.1.0.128/25", codes.InvalidArgument, `CIDR 10.1.0.128/25 overlaps network "backend"`},
		{"not canonical", "frontend", "10.2.0.5/24", codes.InvalidArgument, `CIDR "10.2.0.5/24"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.CreateNetwork(ctx, &jobletv1.CreateNetworkRequest{Name: tc.net, Cidr: tc.cidr})
			wantCode(t, err, tc.code, tc.msg)
		})
	}

	g.netd.SetJobs("backend", 2)
	_, err := c.RemoveNetwork(ctx, &jobletv1.RemoveNetworkRequest{Name: "backend"})
	wantCode(t, err, codes.FailedPrecondition, `network "backend" is used by 2 job(s)`)
	_, err = c.RemoveNetwork(ctx, &jobletv1.RemoveNetworkRequest{Name: "bridge"})
	wantCode(t, err, codes.InvalidArgument, `network "bridge" is built in and cannot be removed`)
	_, err = c.RemoveNetwork(ctx, &jobletv1.RemoveNetworkRequest{Name: "nope"})
	wantCode(t, err, codes.NotFound, `network "nope" does not exist`)
	_, err = c.RemoveNetwork(ctx, &jobletv1.RemoveNetworkRequest{Name: "../etc"})
	wantCode(t, err, codes.InvalidArgument, `network name "../etc"`)

	g.netd.Fail = errdefs.Errorf(errdefs.ErrUnavailable, "dial unix /run/joblet/netd.sock: connect: no such file or directory")
	_, err = c.ListNetworks(ctx, &jobletv1.ListNetworksRequest{})
	wantCode(t, err, codes.Unavailable, "the netd service is unavailable")
	g.netd.Fail = errors.New("iptables: exit status 4: resource busy")
	_, err = c.CreateNetwork(ctx, &jobletv1.CreateNetworkRequest{Name: "frontend", Cidr: "10.2.0.0/24"})
	wantCode(t, err, codes.Internal, "internal error")
	if !strings.Contains(g.logs.String(), "resource busy") {
		t.Fatalf("the internal error was not logged:\n%s", g.logs.String())
	}
}

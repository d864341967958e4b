package cli

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// fakeNetworks is a NetworkService that answers as the gateway and netd
// would: the built-ins, custom networks in memory, admin-only changes, and
// netd's refusals (a taken name, an overlapping range, a network in use, a
// built-in, an unknown network).
type fakeNetworks struct {
	jobletv1.UnimplementedNetworkServiceServer
	mu   sync.Mutex
	nets []*jobletv1.Network // built-ins first, then by name
	// unavailableLists makes that many ListNetworks calls fail as a
	// restarting netd would (Unavailable); lists counts every call.
	unavailableLists, lists int
}

func newFakeNetworks() *fakeNetworks {
	return &fakeNetworks{nets: []*jobletv1.Network{
		{Name: "none", Builtin: true},
		{Name: "bridge", Cidr: "172.20.0.0/16", Bridge: "joblet0", Builtin: true},
		{Name: "isolated", Cidr: "172.21.0.0/16", Bridge: "joblet-isolated", Builtin: true},
	}}
}

func (f *fakeNetworks) find(name string) *jobletv1.Network {
	for _, n := range f.nets {
		if n.GetName() == name {
			return n
		}
	}
	return nil
}

// setJobs says how many jobs use a network.
func (f *fakeNetworks) setJobs(name string, jobs int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.find(name).Jobs = jobs
}

func (f *fakeNetworks) CreateNetwork(ctx context.Context, req *jobletv1.CreateNetworkRequest) (*jobletv1.CreateNetworkResponse, error) {
	if err := adminOnly(ctx, "CreateNetwork"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	name := req.GetName()
	if f.find(name) != nil {
		return nil, status.Errorf(codes.AlreadyExists, "network %q exists already", name)
	}
	p, err := netip.ParsePrefix(req.GetCidr())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "CIDR %q: not an address range like 10.1.0.0/24", req.GetCidr())
	}
	for _, n := range f.nets {
		if o, err := netip.ParsePrefix(n.GetCidr()); err == nil && o.Overlaps(p) {
			return nil, status.Errorf(codes.InvalidArgument, "CIDR %s overlaps network %q (%s)", p, n.GetName(), o)
		}
	}
	n := &jobletv1.Network{Name: name, Cidr: p.String(), Bridge: "joblet-" + name}
	f.nets = append(f.nets, n)
	// Built-ins keep their order at the front; custom ones follow by name.
	slices.SortStableFunc(f.nets, func(a, b *jobletv1.Network) int {
		if a.GetBuiltin() != b.GetBuiltin() {
			if a.GetBuiltin() {
				return -1
			}
			return 1
		}
		if a.GetBuiltin() {
			return 0
		}
		return strings.Compare(a.GetName(), b.GetName())
	})
	return &jobletv1.CreateNetworkResponse{Network: proto.CloneOf(n)}, nil
}

func (f *fakeNetworks) ListNetworks(context.Context, *jobletv1.ListNetworksRequest) (*jobletv1.ListNetworksResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	if f.unavailableLists > 0 {
		f.unavailableLists--
		return nil, status.Error(codes.Unavailable, "netd is restarting")
	}
	resp := &jobletv1.ListNetworksResponse{}
	for _, n := range f.nets {
		resp.Networks = append(resp.Networks, proto.CloneOf(n))
	}
	return resp, nil
}

func (f *fakeNetworks) RemoveNetwork(ctx context.Context, req *jobletv1.RemoveNetworkRequest) (*jobletv1.RemoveNetworkResponse, error) {
	if err := adminOnly(ctx, "RemoveNetwork"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	name := req.GetName()
	n := f.find(name)
	switch {
	case n == nil:
		return nil, status.Errorf(codes.NotFound, "network %q does not exist", name)
	case n.GetBuiltin():
		return nil, status.Errorf(codes.InvalidArgument, "network %q is built in and cannot be removed", name)
	case n.GetJobs() > 0:
		return nil, status.Errorf(codes.FailedPrecondition, "network %q is used by %d job(s)", name, n.GetJobs())
	}
	f.nets = slices.DeleteFunc(f.nets, func(o *jobletv1.Network) bool { return o == n })
	return &jobletv1.RemoveNetworkResponse{}, nil
}

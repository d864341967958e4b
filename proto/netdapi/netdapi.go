// Package netdapi is netd's Go interface, with the gRPC client that
// implements it over netd's socket and the gRPC server that wraps an
// implementation. Callers never see the wire types of the internal API, and
// errors keep their errdefs kind across the socket.
package netdapi

import (
	"context"

	"google.golang.org/grpc"

	"github.com/joblet-dev/joblet/proto/errdefs"
	netdv1 "github.com/joblet-dev/joblet/proto/gen/netd/v1"
)

// The built-in networks.
const (
	None     = "none"     // loopback only
	Isolated = "isolated" // outbound through NAT, no other job reachable
	Bridge   = "bridge"   // the default network
)

// Attachment is a job's prepared network: the isolator starts the job's init
// with setns(CLONE_NEWNET) into NetnsPath and writes ResolvConf and Hosts
// into the job's /etc.
type Attachment struct {
	JobID      string
	Network    string
	NetnsPath  string // nsfs file of the job's network namespace; empty for "none" (the init makes a fresh one, loopback only)
	IP         string // the job's IPv4 address; empty for "none"
	Gateway    string // default gateway and DNS server; empty for "none"
	Hostname   string
	ResolvConf string
	Hosts      string
}

// Network is one network, built-in or custom.
type Network struct {
	Name    string
	CIDR    string // empty for "none"
	Bridge  string // empty for "none"
	Jobs    int    // jobs attached now
	Builtin bool
}

// Netd owns networks, address leases, bridges, veth pairs and firewall rules.
type Netd interface {
	// Attach prepares jobID's network namespace on network (empty means
	// "bridge") with the DNS name name (may be empty). Attaching a job that
	// is already attached returns its attachment unchanged.
	Attach(ctx context.Context, jobID, network, name string) (Attachment, error)
	// Detach releases the job's namespace, veth pair and address. Detaching
	// a job that is not attached succeeds.
	Detach(ctx context.Context, jobID string) error
	// CreateNetwork creates a custom network on an IPv4 CIDR.
	CreateNetwork(ctx context.Context, name, cidr string) (Network, error)
	// ListNetworks returns every network, built-ins first, then by name.
	ListNetworks(ctx context.Context) ([]Network, error)
	// RemoveNetwork removes a custom network; it is refused with
	// errdefs.ErrFailedPrecondition while a job uses it.
	RemoveNetwork(ctx context.Context, name string) error
}

// NewClient returns a Netd that calls netd over cc.
func NewClient(cc grpc.ClientConnInterface) Netd {
	return client{netdv1.NewNetdClient(cc)}
}

type client struct{ c netdv1.NetdClient }

func (c client) Attach(ctx context.Context, jobID, network, name string) (Attachment, error) {
	r, err := c.c.Attach(ctx, &netdv1.AttachRequest{JobId: jobID, Network: network, Name: name})
	return attachmentFromPB(r.GetAttachment()), errdefs.FromGRPC(err)
}

func (c client) Detach(ctx context.Context, jobID string) error {
	_, err := c.c.Detach(ctx, &netdv1.DetachRequest{JobId: jobID})
	return errdefs.FromGRPC(err)
}

func (c client) CreateNetwork(ctx context.Context, name, cidr string) (Network, error) {
	r, err := c.c.CreateNetwork(ctx, &netdv1.CreateNetworkRequest{Name: name, Cidr: cidr})
	return networkFromPB(r.GetNetwork()), errdefs.FromGRPC(err)
}

func (c client) ListNetworks(ctx context.Context) ([]Network, error) {
	r, err := c.c.ListNetworks(ctx, &netdv1.ListNetworksRequest{})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	nets := make([]Network, 0, len(r.GetNetworks()))
	for _, n := range r.GetNetworks() {
		nets = append(nets, networkFromPB(n))
	}
	return nets, nil
}

func (c client) RemoveNetwork(ctx context.Context, name string) error {
	_, err := c.c.RemoveNetwork(ctx, &netdv1.RemoveNetworkRequest{Name: name})
	return errdefs.FromGRPC(err)
}

// Register serves impl on s.
func Register(s grpc.ServiceRegistrar, impl Netd) {
	netdv1.RegisterNetdServer(s, server{impl: impl})
}

type server struct {
	netdv1.UnimplementedNetdServer
	impl Netd
}

func (s server) Attach(ctx context.Context, r *netdv1.AttachRequest) (*netdv1.AttachResponse, error) {
	a, err := s.impl.Attach(ctx, r.GetJobId(), r.GetNetwork(), r.GetName())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &netdv1.AttachResponse{Attachment: attachmentToPB(a)}, nil
}

func (s server) Detach(ctx context.Context, r *netdv1.DetachRequest) (*netdv1.DetachResponse, error) {
	return &netdv1.DetachResponse{}, errdefs.ToGRPC(s.impl.Detach(ctx, r.GetJobId()))
}

func (s server) CreateNetwork(ctx context.Context, r *netdv1.CreateNetworkRequest) (*netdv1.NetworkResponse, error) {
	n, err := s.impl.CreateNetwork(ctx, r.GetName(), r.GetCidr())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &netdv1.NetworkResponse{Network: networkToPB(n)}, nil
}

func (s server) ListNetworks(ctx context.Context, _ *netdv1.ListNetworksRequest) (*netdv1.ListNetworksResponse, error) {
	nets, err := s.impl.ListNetworks(ctx)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	resp := &netdv1.ListNetworksResponse{Networks: make([]*netdv1.Network, 0, len(nets))}
	for _, n := range nets {
		resp.Networks = append(resp.Networks, networkToPB(n))
	}
	return resp, nil
}

func (s server) RemoveNetwork(ctx context.Context, r *netdv1.RemoveNetworkRequest) (*netdv1.RemoveNetworkResponse, error) {
	return &netdv1.RemoveNetworkResponse{}, errdefs.ToGRPC(s.impl.RemoveNetwork(ctx, r.GetName()))
}

func attachmentToPB(a Attachment) *netdv1.Attachment {
	return &netdv1.Attachment{
		JobId: a.JobID, Network: a.Network, NetnsPath: a.NetnsPath, Ip: a.IP, Gateway: a.Gateway,
		Hostname: a.Hostname, ResolvConf: a.ResolvConf, Hosts: a.Hosts,
	}
}

func attachmentFromPB(a *netdv1.Attachment) Attachment {
	return Attachment{
		JobID: a.GetJobId(), Network: a.GetNetwork(), NetnsPath: a.GetNetnsPath(), IP: a.GetIp(),
		Gateway: a.GetGateway(), Hostname: a.GetHostname(), ResolvConf: a.GetResolvConf(), Hosts: a.GetHosts(),
	}
}

func networkToPB(n Network) *netdv1.Network {
	return &netdv1.Network{Name: n.Name, Cidr: n.CIDR, Bridge: n.Bridge, Jobs: int32(n.Jobs), Builtin: n.Builtin}
}

func networkFromPB(n *netdv1.Network) Network {
	return Network{Name: n.GetName(), CIDR: n.GetCidr(), Bridge: n.GetBridge(), Jobs: int(n.GetJobs()), Builtin: n.GetBuiltin()}
}

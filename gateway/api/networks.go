package api

import (
	"context"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/logging"
	"github.com/joblet-dev/joblet/proto/netdapi"
)

// Networks implements jobletv1.NetworkServiceServer by forwarding to netd,
// which owns every network and has the final word on names and ranges.
type Networks struct {
	// Unsafe for the same reason as Server: a new RPC must not compile
	// until it is implemented here.
	jobletv1.UnsafeNetworkServiceServer

	netd netdapi.Netd
}

// NewNetworks returns a NetworkService that forwards to netd.
func NewNetworks(netd netdapi.Netd) *Networks {
	return &Networks{netd: netd}
}

var _ jobletv1.NetworkServiceServer = (*Networks)(nil)

// CreateNetwork implements jobletv1.NetworkServiceServer.
func (s *Networks) CreateNetwork(ctx context.Context, r *jobletv1.CreateNetworkRequest) (*jobletv1.CreateNetworkResponse, error) {
	if err := ValidateNetworkName(r.GetName()); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if err := ValidateCIDR(r.GetCidr()); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	n, err := s.netd.CreateNetwork(ctx, r.GetName(), r.GetCidr())
	if err != nil {
		return nil, userError(ctx, "netd", err)
	}
	logging.From(ctx).Info().Str(logging.KeyNetwork, n.Name).Str("cidr", n.CIDR).Msg("network created")
	return &jobletv1.CreateNetworkResponse{Network: networkToPB(n)}, nil
}

// ListNetworks implements jobletv1.NetworkServiceServer, in netd's order:
// the built-ins first, then the custom networks by name.
func (s *Networks) ListNetworks(ctx context.Context, _ *jobletv1.ListNetworksRequest) (*jobletv1.ListNetworksResponse, error) {
	nets, err := s.netd.ListNetworks(ctx)
	if err != nil {
		return nil, userError(ctx, "netd", err)
	}
	resp := &jobletv1.ListNetworksResponse{Networks: make([]*jobletv1.Network, 0, len(nets))}
	for _, n := range nets {
		resp.Networks = append(resp.Networks, networkToPB(n))
	}
	return resp, nil
}

// RemoveNetwork implements jobletv1.NetworkServiceServer. netd refuses the
// built-ins and a network a job still uses.
func (s *Networks) RemoveNetwork(ctx context.Context, r *jobletv1.RemoveNetworkRequest) (*jobletv1.RemoveNetworkResponse, error) {
	if err := ValidateNetworkName(r.GetName()); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if err := s.netd.RemoveNetwork(ctx, r.GetName()); err != nil {
		return nil, userError(ctx, "netd", err)
	}
	logging.From(ctx).Info().Str(logging.KeyNetwork, r.GetName()).Msg("network removed")
	return &jobletv1.RemoveNetworkResponse{}, nil
}

func networkToPB(n netdapi.Network) *jobletv1.Network {
	return &jobletv1.Network{Name: n.Name, Cidr: n.CIDR, Bridge: n.Bridge, Jobs: int32(n.Jobs), Builtin: n.Builtin}
}

package fake

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/joblet-dev/joblet/proto/errdefs"
	"github.com/joblet-dev/joblet/proto/netdapi"
)

// Netd keeps networks in memory with netd's built-ins and its errors:
// AlreadyExists for a taken name, InvalidArgument for a bad or overlapping
// CIDR and for removing a built-in, NotFound for an unknown network,
// FailedPrecondition for removing one that jobs use.
type Netd struct {
	mu     sync.Mutex
	custom map[string]netdapi.Network
	jobs   map[string]int
	// Fail, when set, is returned by every call.
	Fail error
}

var _ netdapi.Netd = (*Netd)(nil)

// builtins are netd's networks that always exist, in its listing order.
var builtins = []netdapi.Network{
	{Name: netdapi.None, Builtin: true},
	{Name: netdapi.Bridge, CIDR: "172.20.0.0/16", Bridge: "joblet0", Builtin: true},
	{Name: netdapi.Isolated, CIDR: "172.21.0.0/16", Bridge: "joblet-isolated", Builtin: true},
}

// Attach implements netdapi.Netd; the gateway never attaches jobs.
func (f *Netd) Attach(context.Context, string, string, string) (netdapi.Attachment, error) {
	return netdapi.Attachment{}, errdefs.Errorf(errdefs.ErrFailedPrecondition, "the fake netd attaches no jobs")
}

// Detach implements netdapi.Netd; the gateway never detaches jobs.
func (f *Netd) Detach(context.Context, string) error {
	return errdefs.Errorf(errdefs.ErrFailedPrecondition, "the fake netd attaches no jobs")
}

// CreateNetwork implements netdapi.Netd.
func (f *Netd) CreateNetwork(_ context.Context, name, cidr string) (netdapi.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Fail != nil {
		return netdapi.Network{}, f.Fail
	}
	if _, ok := f.find(name); ok {
		return netdapi.Network{}, errdefs.Errorf(errdefs.ErrAlreadyExists, "network %q exists already", name)
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is4() || p.Masked() != p {
		return netdapi.Network{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "CIDR %q: not a canonical IPv4 range like 10.1.0.0/24", cidr)
	}
	for _, n := range f.all() {
		if o, err := netip.ParsePrefix(n.CIDR); err == nil && o.Overlaps(p) {
			return netdapi.Network{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "CIDR %s overlaps network %q (%s)", p, n.Name, o)
		}
	}
	if f.custom == nil {
		f.custom = map[string]netdapi.Network{}
	}
	n := netdapi.Network{Name: name, CIDR: cidr, Bridge: "joblet-" + name}
	f.custom[name] = n
	return n, nil
}

// ListNetworks implements netdapi.Netd: built-ins first, then by name.
func (f *Netd) ListNetworks(context.Context) ([]netdapi.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Fail != nil {
		return nil, f.Fail
	}
	return f.all(), nil
}

// RemoveNetwork implements netdapi.Netd.
func (f *Netd) RemoveNetwork(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Fail != nil {
		return f.Fail
	}
	n, ok := f.find(name)
	switch {
	case ok && n.Builtin:
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "network %q is built in and cannot be removed", name)
	case !ok:
		return errdefs.Errorf(errdefs.ErrNotFound, "network %q does not exist", name)
	case n.Jobs > 0:
		return errdefs.Errorf(errdefs.ErrFailedPrecondition, "network %q is used by %d job(s)", name, n.Jobs)
	}
	delete(f.custom, name)
	return nil
}

// SetJobs says how many jobs are attached to a network now, as netd would
// count them.
func (f *Netd) SetJobs(name string, jobs int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.jobs == nil {
		f.jobs = map[string]int{}
	}
	f.jobs[name] = jobs
}

// all lists every network with its job count, in netd's order.
func (f *Netd) all() []netdapi.Network {
	out := slices.Clone(builtins)
	var custom []netdapi.Network
	for _, n := range f.custom {
		custom = append(custom, n)
	}
	slices.SortFunc(custom, func(a, b netdapi.Network) int { return strings.Compare(a.Name, b.Name) })
	out = append(out, custom...)
	for i := range out {
		out[i].Jobs = f.jobs[out[i].Name]
	}
	return out
}

func (f *Netd) find(name string) (netdapi.Network, bool) {
	for _, n := range f.all() {
		if n.Name == name {
			return n, true
		}
	}
	return netdapi.Network{}, false
}

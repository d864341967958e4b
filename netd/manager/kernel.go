package manager

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/netd/nsfile"
	"github.com/joblet-dev/joblet/netd/state"
	"github.com/joblet-dev/joblet/netd/validate"
	"github.com/joblet-dev/joblet/proto/netdapi"
)

// ensureBridge makes n's bridge exist, up, with exactly the gateway address.
func ensureBridge(n *network) error {
	link, err := netlink.LinkByName(n.bridge)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		// A MAC derived from the gateway's address, like a job's: a bridge
		// someone deleted comes back with the same one, so the jobs' ARP
		// caches still hold the gateway's right address.
		attrs := netlink.LinkAttrs{Name: n.bridge, HardwareAddr: macOf(n.gateway())}
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			return fmt.Errorf("add bridge %s: %w", n.bridge, err)
		}
		link, err = netlink.LinkByName(n.bridge)
	}
	if err != nil {
		return fmt.Errorf("bridge %s: %w", n.bridge, err)
	}
	if link.Type() != "bridge" {
		return fmt.Errorf("%s exists and is a %s, not a bridge", n.bridge, link.Type())
	}
	// Without IPv6 on the bridge a job has no link-local way around the
	// IPv4 rules to the host.
	disableIPv6(n.bridge)
	want := &netlink.Addr{IPNet: ipNet(n.gateway(), n.prefix.Bits())}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", n.bridge, err)
	}
	for _, a := range addrs {
		if !a.Equal(*want) {
			if err := netlink.AddrDel(link, &a); err != nil {
				return fmt.Errorf("remove %s from %s: %w", a.IPNet, n.bridge, err)
			}
		}
	}
	if err := netlink.AddrReplace(link, want); err != nil {
		return fmt.Errorf("address %s on %s: %w", want.IPNet, n.bridge, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("up %s: %w", n.bridge, err)
	}
	return nil
}

// macOf is a job's MAC address, derived from its IP (locally administered,
// unicast): neighbours' ARP caches stay right when a job's veth pair is
// restored or its address goes to a new job.
func macOf(ip netip.Addr) net.HardwareAddr {
	a := ip.As4()
	return net.HardwareAddr{0x02, 0x4a, a[0], a[1], a[2], a[3]}
}

func ipNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, 32)}
}

// disableIPv6 is best effort: a kernel without IPv6 has no such file.
func disableIPv6(link string) {
	os.WriteFile(filepath.Join("/proc/sys/net/ipv6/conf", link, "disable_ipv6"), []byte("1"), 0o644)
}

func deleteLink(name string) error {
	link, err := netlink.LinkByName(name)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	// ENODEV: gone meanwhile (a job's veth pair goes with its namespace,
	// which ends once unpinned: see Detach).
	if err := netlink.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// kernelWorkers is how many jobs' kernel work may run at once (see
// Manager.kernel): two keep one at work in the kernel while the other
// prepares its next call.
const kernelWorkers = 2

// jobKernelWork runs f, a job's plumb or teardown, once fewer than
// kernelWorkers others run.
func (m *Manager) jobKernelWork(f func() error) error {
	m.kernel <- struct{}{}
	defer func() { <-m.kernel }()
	return f()
}

// plumb prepares a job's namespace: pinned, loopback up, and on a network
// with a bridge, a veth pair made with its job end directly inside the
// namespace as eth0, addressed and routed through the gateway.
func (m *Manager) plumb(l state.Lease, n *network) error {
	path := m.pinPath(l)
	if !nsfile.Pinned(path) {
		if err := nsfile.Remove(path); err != nil {
			return err
		}
		if err := nsfile.Create(path); err != nil {
			return err
		}
	}
	ns, err := nsfile.Open(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in job netns: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("job loopback: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("job loopback up: %w", err)
	}
	if n == nil {
		return nil
	}

	br, err := netlink.LinkByName(n.bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", n.bridge, err)
	}
	if err := deleteLink(l.Veth); err != nil { // a leftover of an earlier try
		return err
	}
	ip := netip.MustParseAddr(l.IP)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: l.Veth}, PeerName: "eth0",
		PeerHardwareAddr: macOf(ip), PeerNamespace: netlink.NsFd(int(ns))}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s: %w", l.Veth, err)
	}
	if err := m.attachPort(l.Veth, br, n.isolated); err != nil {
		return err
	}
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("job eth0: %w", err)
	}
	if err := h.AddrReplace(eth0, &netlink.Addr{IPNet: ipNet(ip, n.prefix.Bits())}); err != nil {
		return fmt.Errorf("job address: %w", err)
	}
	if err := h.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("job eth0 up: %w", err)
	}
	def := &netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: n.gateway().AsSlice()}
	if err := h.RouteReplace(def); err != nil {
		return fmt.Errorf("job default route: %w", err)
	}
	return nil
}

// attachPort puts a job's host-side veth on the bridge and up; on the
// isolated network the port is isolated, so the bridge forwards nothing
// between two jobs' ports.
func (m *Manager) attachPort(name string, br netlink.Link, isolated bool) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("veth %s: %w", name, err)
	}
	disableIPv6(name)
	if err := netlink.LinkSetMaster(link, br); err != nil {
		return fmt.Errorf("veth %s on %s: %w", name, br.Attrs().Name, err)
	}
	if isolated {
		if err := netlink.LinkSetIsolated(link, true); err != nil {
			return fmt.Errorf("isolate port %s: %w", name, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("up %s: %w", name, err)
	}
	return nil
}

// teardown removes a job's veth pair and namespace pin.
func (m *Manager) teardown(l state.Lease) error {
	var errs []error
	if l.Veth != "" {
		errs = append(errs, deleteLink(l.Veth))
	}
	return errors.Join(append(errs, nsfile.Remove(m.pinPath(l)))...)
}

// hostRanges is the host's IPv4 routes and addresses, except the default
// route, loopback and links in skip.
func hostRanges(skip map[string]bool) ([]validate.Taken, error) {
	links, err := settledDump(netlink.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var out []validate.Taken
	routes, err := settledDump(func() ([]netlink.Route, error) { return netlink.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil || skip[names[r.LinkIndex]] {
			continue
		}
		p, ok := prefixOf(r.Dst)
		if !ok || p.Bits() == 0 {
			continue
		}
		out = append(out, validate.Taken{Prefix: p, What: "a host route on " + names[r.LinkIndex]})
	}
	addrs, err := settledDump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if skip[names[a.LinkIndex]] || a.IP.IsLoopback() {
			continue
		}
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			out = append(out, validate.Taken{Prefix: netip.PrefixFrom(ip, 32), What: "a host address on " + names[a.LinkIndex]})
		}
	}
	return out, nil
}

// settledDump runs a netlink listing again while the kernel reports it
// interrupted by a change (a job's veth pair or a namespace made ahead
// coming or going meanwhile), a few times at most.
func settledDump[T any](list func() ([]T, error)) ([]T, error) {
	for range 9 {
		if out, err := list(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return list()
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	ip, ok := netip.AddrFromSlice(n.IP.To4())
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(ip, ones).Masked(), true
}

// reconcile brings the kernel in line with the loaded state: bridges,
// addresses and rules of every network restored; namespaces that are gone
// (after a reboot) end their lease; a job whose veth pair is missing gets
// it back; bridges, veth pairs and pins netd no longer owns are removed.
func (m *Manager) reconcile() error {
	m.saveMu.Lock()
	defer m.saveMu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	// Jobs' traffic is routed by the host; the setting is per network
	// namespace, so netd sets it in its own.
	if m.forwardWas == nil {
		m.forwardWas, _ = os.ReadFile(ipForward)
	}
	if err := os.WriteFile(ipForward, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("enable ip_forward: %w", err)
	}
	// Namespaces made ahead by an earlier netd (spare.go) are owned by no
	// lease: their veth pairs and pins go with the other leftovers.
	ownBridges, ownVeths, ownPins := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, n := range m.nets {
		ownBridges[n.bridge] = true
		if err := ensureBridge(n); err != nil {
			return err
		}
	}
	for _, l := range m.leases {
		ownVeths[l.Veth] = true
		ownPins[filepath.Base(m.pinPath(l.Lease))] = true
	}
	if host, err := hostRanges(ownBridges); err == nil {
		for _, n := range m.nets {
			for _, t := range host {
				if t.Prefix.Overlaps(n.prefix) {
					m.log.Warn().Str("network", n.name).Str("cidr", n.prefix.String()).
						Msgf("network overlaps %s (%s)", t.What, t.Prefix)
				}
			}
		}
	}
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	for _, link := range links {
		name := link.Attrs().Name
		stale := (link.Type() == "bridge" && strings.HasPrefix(name, "joblet") && !ownBridges[name]) ||
			(link.Type() == "veth" && strings.HasPrefix(name, "jv") && !ownVeths[name])
		if stale {
			m.log.Info().Str("link", name).Msg("removing a link netd no longer owns")
			if err := deleteLink(name); err != nil {
				m.log.Error().Err(err).Str("link", name).Msg("remove stale link")
			}
		}
	}
	for id, l := range m.leases {
		if l.Network == netdapi.None {
			continue // nothing in the kernel; load kept it for this boot only
		}
		log := m.log.With().Str("job_id", id).Str("network", l.Network).Logger()
		if !nsfile.Pinned(m.pinPath(l.Lease)) {
			log.Info().Msg("job namespace is gone: ending its lease")
			if err := m.teardown(l.Lease); err != nil {
				log.Error().Err(err).Msg("teardown")
			}
			m.dropLease(l)
			continue
		}
		n := m.nets[l.Network]
		if _, err := netlink.LinkByName(l.Veth); err == nil {
			br, err := netlink.LinkByName(n.bridge)
			if err == nil {
				err = m.attachPort(l.Veth, br, n.isolated)
			}
			if err != nil {
				log.Error().Err(err).Msg("restore veth port")
			}
			continue
		}
		log.Info().Msg("restoring the job's missing veth pair")
		if err := m.plumb(l.Lease, n); err != nil {
			log.Error().Err(err).Msg("restore job network")
		}
	}
	entries, err := os.ReadDir(filepath.Join(m.opts.RunDir, "netns"))
	if err != nil {
		return fmt.Errorf("read netns dir: %w", err)
	}
	for _, e := range entries {
		if !ownPins[e.Name()] {
			m.log.Info().Str("pin", e.Name()).Msg("removing a namespace pin netd no longer owns")
			if err := nsfile.Remove(filepath.Join(m.opts.RunDir, "netns", e.Name())); err != nil {
				m.log.Error().Err(err).Msg("remove stale pin")
			}
		}
	}
	if err := m.fw.Sync(m.fwNets()); err != nil {
		return err
	}
	for _, n := range m.sortedNets() {
		if err := m.startDNS(n); err != nil {
			return err
		}
	}
	for _, l := range m.leases {
		m.setNames(l.Lease)
	}
	return m.saveLocked()
}

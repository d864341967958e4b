package manager

import (
	"bytes"
	"errors"
	"net"
	"os"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/joblet-dev/joblet/netd/firewall"
	"github.com/joblet-dev/joblet/netd/nsfile"
	"github.com/joblet-dev/joblet/proto/netdapi"
)

// DefaultCheckInterval is how often netd checks, by default, that the
// kernel still holds what it made.
const DefaultCheckInterval = 2 * time.Second

// watch checks the kernel every interval until stop is closed. Someone
// else's `iptables -F`, a deleted bridge or veth, or ip_forward turned off
// would otherwise cut jobs off until netd's next start.
func (m *Manager) watch(interval time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			m.check()
		}
	}
}

// stopWatching stops the periodic check and waits for a check under way;
// it may be called more than once.
func (m *Manager) stopWatching() {
	m.stopOnce.Do(func() {
		if m.stopWatch != nil {
			close(m.stopWatch)
			<-m.watchDone
		}
	})
}

// check is the cheap periodic form of reconcile: it restores ip_forward,
// the networks' bridges, live jobs' veth pairs
// and ports, and the firewall rules, when someone else changed them, and
// logs what it restored. In the steady state it costs one link listing,
// one address listing per network, and one iptables listing per chain and
// check per jump. The iptables calls (six processes, 1 ms of CPU each,
// 5-25 ms of wall time each under load) run without m.mu, so attaches and
// detaches never wait for them; only a restore takes m.mu.
func (m *Manager) check() {
	fwNets, ok := m.checkLinks()
	if !ok || m.fw.Intact(fwNets) {
		return
	}
	// Not as listed: changed by someone else, or a network came or went
	// meanwhile. Again under m.mu, with the networks as they are now.
	m.mu.Lock()
	defer m.mu.Unlock()
	fwNets = m.fwNets()
	if m.fw.Intact(fwNets) {
		return
	}
	m.log.Warn().Msg("netd's iptables rules were flushed or changed by someone else: restoring them")
	if err := m.fw.Sync(fwNets); err != nil {
		m.log.Error().Err(err).Msg("restore iptables rules")
	}
}

// fwNets is the firewall's view of the networks; the caller holds m.mu.
func (m *Manager) fwNets() []firewall.Net {
	nets := make([]firewall.Net, 0, len(m.nets))
	for _, n := range m.sortedNets() {
		nets = append(nets, n.fw())
	}
	return nets
}

// checkLinks is check's part under m.mu: ip_forward, the bridges and the
// jobs' veth pairs. It returns the networks' rules as they are, and false
// when the links could not be listed (the next check goes on).
func (m *Manager) checkLinks() ([]firewall.Net, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b, err := os.ReadFile(ipForward); err == nil && !bytes.Equal(bytes.TrimSpace(b), []byte("1")) {
		m.log.Warn().Msg("ip_forward was turned off by someone else: turning it on again")
		if err := os.WriteFile(ipForward, []byte("1"), 0o644); err != nil {
			m.log.Error().Err(err).Msg("enable ip_forward")
		}
	}
	links, err := linksByName()
	if errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, false // links changed while listed: the next check sees them settled
	}
	if err != nil {
		m.log.Error().Err(err).Msg("check networks")
		return nil, false
	}
	for _, n := range m.sortedNets() {
		if bridgeIntact(links[n.bridge], n) {
			continue
		}
		m.log.Warn().Str("network", n.name).Str("bridge", n.bridge).
			Msg("the network's bridge was removed or changed by someone else: restoring it")
		if err := ensureBridge(n); err != nil {
			m.log.Error().Err(err).Str("network", n.name).Msg("restore bridge")
			continue
		}
		// The responder's sockets stay bound to the gateway's address
		// while it is gone, and serve again once it is back.
		if links, err = linksByName(); err != nil {
			return nil, false // the next check goes on
		}
	}
	for _, l := range m.leases {
		if l.busy != nil || l.Network == netdapi.None || l.Veth == "" {
			continue // an Attach or Detach under way does its own kernel work
		}
		n, ok := m.nets[l.Network]
		if !ok {
			continue
		}
		br, ok := links[n.bridge]
		if !ok {
			continue
		}
		veth, ok := links[l.Veth]
		if ok && veth.Attrs().MasterIndex == br.Attrs().Index && veth.Attrs().Flags&net.FlagUp != 0 {
			continue
		}
		log := m.log.With().Str("job_id", l.JobID).Str("network", l.Network).Logger()
		if !nsfile.Pinned(m.pinPath(l.Lease)) {
			continue // the job is ending; Detach removes the rest
		}
		if ok {
			log.Warn().Str("veth", l.Veth).Msg("the job's veth was taken off its bridge by someone else: putting it back")
			if err := m.attachPort(l.Veth, br, n.isolated); err != nil {
				log.Error().Err(err).Msg("restore veth port")
			}
			continue
		}
		log.Warn().Str("veth", l.Veth).Msg("the job's veth pair was removed by someone else: restoring it")
		if err := m.plumb(l.Lease, n); err != nil {
			log.Error().Err(err).Msg("restore job network")
		}
	}
	m.checkSpares(links)
	return m.fwNets(), true
}

func linksByName() (map[string]netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	byName := make(map[string]netlink.Link, len(links))
	for _, l := range links {
		byName[l.Attrs().Name] = l
	}
	return byName, nil
}

// bridgeIntact reports whether link is n's bridge, up, with the gateway's
// address.
func bridgeIntact(link netlink.Link, n *network) bool {
	if link == nil || link.Type() != "bridge" || link.Attrs().Flags&net.FlagUp == 0 {
		return false
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return false
	}
	want := ipNet(n.gateway(), n.prefix.Bits())
	for _, a := range addrs {
		if a.IPNet.String() == want.String() {
			return true
		}
	}
	return false
}

// checkSpares discards the namespaces made ahead (spare.go) that someone
// else damaged (their veth pair removed or taken off the bridge, their pin
// unmounted) and makes new ones, so that an Attach, which does no kernel
// work with a spare, gives jobs intact ones (one taken in the moment
// between the damage and this check is restored like any job's, above).
// The caller holds m.mu.
func (m *Manager) checkSpares(links map[string]netlink.Link) {
	for _, n := range m.sortedNets() {
		br, ok := links[n.bridge]
		if !ok {
			continue // not restored: the next check sees the spares
		}
		for i := len(n.spares) - 1; i >= 0; i-- {
			s := n.spares[i]
			veth, ok := links[s.veth]
			if ok && veth.Attrs().MasterIndex == br.Attrs().Index && veth.Attrs().Flags&net.FlagUp != 0 &&
				nsfile.Pinned(m.pinPath(s.lease(n.name))) {
				continue
			}
			m.log.Warn().Str("network", n.name).Str("veth", s.veth).
				Msg("a namespace made ahead was damaged by someone else: making another")
			m.discardSpare(n, i)
		}
		m.refill(n)
	}
}

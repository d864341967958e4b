package manager

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/netip"
	"path/filepath"

	"github.com/joblet-dev/joblet/netd/state"
)

// Namespaces made ahead (spares). A job's network costs netd a namespace
// pin, a veth pair, its port on the bridge, an address, loopback and eth0
// up and a default route: ~5 ms of CPU and 10-20 ms of wall time under
// load, most of it waiting for the kernel's rtnl lock. None of it depends
// on the job: its id, DNS names and hostname are not in the kernel. So
// each network keeps a few namespaces ready, plumbed like a job's, and an
// Attach takes one and only saves the lease; the network makes the next
// spare in the background.
//
// A spare is netd's own until a job takes it: its pin is
// "<runDir>/netns/_spare-<12 random hex>" (no job id starts with "_"; a
// bind mount cannot be renamed, so the job's lease records the pin's
// name, state.Lease.Netns) and its veth "jv<the same 12 hex>", so that
// one tells the other (the e2e tests tell spares from jobs' leftovers). Spares are not
// saved: a next netd finds their veth pairs and pins owned by no lease and
// removes them (reconcile), as Close and Purge do. Each holds an address
// of the network's pool; an Attach to a full network takes a spare, or
// waits for one being made, before it refuses.

// DefaultSpares is how many namespaces each network keeps made ahead,
// by default.
const DefaultSpares = 2

// spare is a namespace made ahead for a network's next job.
type spare struct {
	pin  string // file name in <runDir>/netns, and the veth's seed
	veth string
	ip   netip.Addr
}

// lease is the spare as a lease of nobody, for plumb and teardown.
func (s spare) lease(network string) state.Lease {
	return state.Lease{JobID: s.pin, Network: network, IP: s.ip.String(), Veth: s.veth, Netns: s.pin}
}

// pinPath is the file pinning a lease's namespace.
func (m *Manager) pinPath(l state.Lease) string {
	if l.Netns != "" {
		return filepath.Join(m.opts.RunDir, "netns", l.Netns)
	}
	return m.nsPath(l.JobID)
}

// newSpare names a new spare; its address is to be allocated.
func newSpare() spare {
	b := make([]byte, 6)
	rand.Read(b) // never fails (crypto/rand)
	h := hex.EncodeToString(b)
	return spare{pin: "_spare-" + h, veth: "jv" + h}
}

// takeSpare gives a ready spare of n to a job, its address now the job's;
// the caller holds m.mu.
func (m *Manager) takeSpare(n *network, jobID string) (spare, bool) {
	if len(n.spares) == 0 {
		return spare{}, false
	}
	s := n.spares[0]
	n.spares = n.spares[1:]
	n.pool.Release(s.ip)
	if err := n.pool.Reserve(s.ip, jobID); err != nil {
		// Released just before under the same lock: cannot happen.
		panic(err)
	}
	return s, true
}

// refill starts making spares of n until it has m.spares ready or under
// way; the caller holds m.mu. A network with no free address gets no more.
func (m *Manager) refill(n *network) {
	for !m.closing && len(n.spares)+n.filling < m.spares {
		s := newSpare()
		ip, err := n.pool.Allocate(s.pin)
		if err != nil {
			return
		}
		s.ip = ip
		n.filling++
		m.fills.Add(1)
		go m.fill(n, s)
	}
}

// fill plumbs a spare of n and makes it ready, unless the network went or
// netd is closing meanwhile, or the plumbing failed: then it is undone.
// Its address is freed, and n.filling counts it, until that is done, so
// an Attach to a full network and RemoveNetwork wait for it.
func (m *Manager) fill(n *network, s spare) {
	defer m.fills.Done()
	l := s.lease(n.name)
	err := m.jobKernelWork(func() error { return m.plumb(l, n) })
	m.mu.Lock()
	if err == nil && !m.closing && m.nets[n.name] == n {
		n.spares = append(n.spares, s)
		n.filling--
		m.torn.Broadcast()
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	if err != nil {
		m.log.Warn().Err(err).Str("network", n.name).Msg("make a namespace ahead")
	}
	if terr := m.jobKernelWork(func() error { return m.teardown(l) }); terr != nil {
		m.log.Error().Err(terr).Str("network", n.name).Msg("undo a namespace made ahead")
	}
	m.mu.Lock()
	n.pool.Release(s.ip)
	n.filling--
	m.torn.Broadcast()
	m.mu.Unlock()
}

// discardSpare takes a spare out of n and removes it in the background
// (the periodic check found it damaged); its address is freed once it is
// gone. The caller holds m.mu.
func (m *Manager) discardSpare(n *network, i int) {
	s := n.spares[i]
	n.spares = append(n.spares[:i:i], n.spares[i+1:]...)
	n.tearing++
	m.teardowns.Add(1)
	go func() {
		defer m.teardowns.Done()
		if err := m.jobKernelWork(func() error { return m.teardown(s.lease(n.name)) }); err != nil {
			m.log.Error().Err(err).Str("network", n.name).Msg("remove a damaged namespace made ahead")
		}
		m.mu.Lock()
		n.pool.Release(s.ip)
		n.tearing--
		m.torn.Broadcast()
		m.mu.Unlock()
	}()
}

// dropSpares removes n's ready spares from the kernel and frees their
// addresses; the caller holds m.mu and no fill of n is under way.
func (m *Manager) dropSpares(n *network) error {
	var errs []error
	for _, s := range n.spares {
		errs = append(errs, m.teardown(s.lease(n.name)))
		n.pool.Release(s.ip)
	}
	n.spares = nil
	return errors.Join(errs...)
}

// stopSpares makes no more spares, waits for those under way and removes
// every network's spares: Close and Purge leave none behind.
func (m *Manager) stopSpares() error {
	m.mu.Lock()
	m.closing = true
	m.mu.Unlock()
	m.fills.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, n := range m.nets {
		errs = append(errs, m.dropSpares(n))
	}
	return errors.Join(errs...)
}

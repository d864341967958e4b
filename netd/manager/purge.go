package manager

import (
	"bytes"
	"errors"
	"fmt"
	"os"
)

const ipForward = "/proc/sys/net/ipv4/ip_forward"

// Purge removes from the kernel everything netd made: every job's veth
// pair and namespace pin, the namespaces made ahead (spare.go), every
// bridge (its DNS responder stopped), netd's iptables chains and the
// jumps to them, and it puts ip_forward back to
// what it was before netd first set it. It is for a netd that must leave a
// developer's machine as it found it when it stops (config
// network.cleanupOnExit); the saved state stays, so the next start
// recreates the networks, and ends the leases whose namespace is gone.
// Call it last: the Manager must not be used afterwards.
func (m *Manager) Purge() error {
	m.stopWatching() // or it would restore what Purge removes
	errs := []error{m.stopSpares()}
	m.teardowns.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range m.leases {
		errs = append(errs, m.teardown(l.Lease))
	}
	for _, n := range m.sortedNets() {
		if n.dns != nil {
			errs = append(errs, n.dns.Close())
			n.dns = nil
		}
		errs = append(errs, deleteLink(n.bridge))
	}
	errs = append(errs, m.fw.Purge())
	if bytes.Equal(bytes.TrimSpace(m.forwardWas), []byte("0")) {
		if err := os.WriteFile(ipForward, []byte("0"), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore ip_forward: %w", err))
		}
	}
	return errors.Join(errs...)
}

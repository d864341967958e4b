package manager

import (
	"slices"

	"github.com/joblet-dev/joblet/netd/state"
)

// Saving the state (group commit). Every change to the networks or leases
// bumps m.gen under m.mu. persist(gen) returns once the file holds the
// state of generation gen or a newer one: one caller at a time (m.saveMu)
// takes a snapshot of the whole state under m.mu and writes it with m.mu
// released, so attaches and detaches go on meanwhile; the callers that
// queued on m.saveMu during that write find their change in the next
// snapshot, which one of them writes for all: one fsync per batch, not per
// call. Each snapshot is the whole state as it was at some moment, so the
// file never misses a lease that an Attach returned while it still exists.

// lease is a job's lease in memory.
type lease struct {
	state.Lease
	// busy is non-nil while an Attach (its kernel work and save) or a
	// Detach (its save) of the job is under way outside m.mu, and closed
	// when that ends: another call for the job waits for it, and the
	// periodic check leaves the job alone.
	busy chan struct{}
	// leaving marks a lease that a Detach is saving the state without:
	// snapshots leave it out.
	leaving bool
	// gen is the generation that added it: the file may hold the lease
	// only once a snapshot of that generation or newer was taken.
	gen uint64
}

// changed bumps the state's generation; the caller holds m.mu.
func (m *Manager) changed() uint64 {
	m.gen++
	return m.gen
}

// persist saves the state unless a save of generation gen or newer is
// done already. If the save fails, undo (unless nil) runs under m.mu
// before any other save can start, to take the caller's change out of the
// next snapshots. The caller must not hold m.mu.
func (m *Manager) persist(gen uint64, undo func()) error {
	m.saveMu.Lock()
	defer m.saveMu.Unlock()
	if m.savedGen >= gen {
		return nil
	}
	m.mu.Lock()
	st, g := m.snapshot()
	m.mu.Unlock()
	err := m.write(st, g)
	if err != nil && undo != nil {
		m.mu.Lock()
		undo()
		m.mu.Unlock()
	}
	return err
}

// saveLocked saves the state now, for a change that keeps m.saveMu and
// m.mu for its whole course (networks, reconcile: rare, and their kernel
// work must not interleave with attaches).
func (m *Manager) saveLocked() error {
	m.changed()
	st, g := m.snapshot()
	return m.write(st, g)
}

// snapshot is the state to save; the caller holds m.mu.
func (m *Manager) snapshot() (state.State, uint64) {
	st := state.State{BootID: m.bootID}
	for _, n := range m.sortedNets() {
		st.Networks = append(st.Networks, state.Network{Name: n.name, CIDR: n.prefix.String(),
			Bridge: n.bridge, Builtin: n.builtin, Next: n.pool.Next().String()})
	}
	for _, id := range slices.Sorted(mapKeys(m.leases)) {
		if l := m.leases[id]; !l.leaving {
			st.Leases = append(st.Leases, l.Lease)
		}
	}
	m.snapGen = m.gen
	return st, m.gen
}

// write saves a snapshot of generation g; the caller holds m.saveMu.
func (m *Manager) write(st state.State, g uint64) error {
	if err := m.store.Save(st); err != nil {
		return err
	}
	m.savedGen = g
	return nil
}

// inFile reports whether the saved file may hold l: a snapshot was taken
// since it was added. The caller holds m.mu.
func (m *Manager) inFile(l *lease) bool { return m.snapGen >= l.gen }

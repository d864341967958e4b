package manager

import (
	"sync"

	"github.com/joblet-dev/joblet/netd/firewall"
)

// lockedFirewall serialises the calls of a firewall.Firewall, which is not
// safe for concurrent use, under a lock of its own: the periodic check
// (watch.go) lists the rules without m.mu, while the calls that change
// them hold m.mu too (taken first, never while holding this one).
type lockedFirewall struct {
	mu sync.Mutex
	fw *firewall.Firewall
}

func (l *lockedFirewall) Intact(nets []firewall.Net) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fw.Intact(nets)
}

func (l *lockedFirewall) Sync(nets []firewall.Net) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fw.Sync(nets)
}

func (l *lockedFirewall) Add(n firewall.Net) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fw.Add(n)
}

func (l *lockedFirewall) Remove(n firewall.Net) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fw.Remove(n)
}

func (l *lockedFirewall) Purge() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fw.Purge()
}

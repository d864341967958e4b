// Package manager is netd's core: it owns the networks, their bridges, DNS
// responders and firewall rules, and each attached job's network namespace,
// veth pair and address lease. It persists what it owns and, when it opens,
// reconciles the kernel with that state.
package manager

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/joblet-dev/joblet/netd/dns"
	"github.com/joblet-dev/joblet/netd/firewall"
	"github.com/joblet-dev/joblet/netd/ipam"
	"github.com/joblet-dev/joblet/netd/nsfile"
	"github.com/joblet-dev/joblet/netd/state"
	"github.com/joblet-dev/joblet/netd/validate"
	"github.com/joblet-dev/joblet/proto/errdefs"
	"github.com/joblet-dev/joblet/proto/netdapi"
)

// Defaults of the built-in networks.
const (
	DefaultBridgeCIDR   = "172.20.0.0/16"
	DefaultIsolatedCIDR = "172.21.0.0/16"
	BridgeBridge        = "joblet0"
	IsolatedBridge      = "joblet-isolated"
)

// Options configure a Manager.
type Options struct {
	RunDir       string // namespace pins go in RunDir/netns
	StateDir     string // netd's own state directory
	BridgeCIDR   string // the "bridge" network; DefaultBridgeCIDR if empty
	IsolatedCIDR string // the "isolated" network; DefaultIsolatedCIDR if empty
	ResolvConf   string // the host's resolvers; /etc/resolv.conf if empty
	// CheckInterval is how often the kernel is checked for rules, bridges
	// and veth pairs someone else removed (DefaultCheckInterval if zero;
	// negative: never, as in tests that change the kernel on purpose).
	CheckInterval time.Duration
	// Spares is how many namespaces each network keeps made ahead for its
	// next jobs (spare.go): DefaultSpares if zero; negative: none, every
	// job's namespace is made during its Attach.
	Spares int
	Log    zerolog.Logger
}

type network struct {
	name, bridge string
	prefix       netip.Prefix
	builtin      bool
	isolated     bool
	pool         *ipam.Pool
	dns          *dns.Responder
	// tearing counts the detached jobs (and discarded spares) whose veth
	// pair is still being removed (m.mu); their addresses are freed when
	// it is done.
	tearing int
	// spares are the namespaces made ahead and ready for the next jobs;
	// filling counts those being made (m.mu, spare.go).
	spares  []spare
	filling int
}

func (n *network) gateway() netip.Addr { return ipam.Gateway(n.prefix) }

func (n *network) fw() firewall.Net {
	return firewall.Net{Name: n.name, Bridge: n.bridge, CIDR: n.prefix, Isolated: n.isolated}
}

// Manager implements netdapi.Netd on the kernel.
type Manager struct {
	opts      Options
	log       zerolog.Logger
	store     *state.Store
	fw        *lockedFirewall
	upstreams []string
	// forwardWas is ip_forward as netd found it, which Purge restores.
	forwardWas []byte

	bootID string

	// saveMu is held by the one caller writing the state file (save.go);
	// it is taken before mu, never while holding it.
	saveMu   sync.Mutex
	savedGen uint64 // the generation of the state last saved (saveMu)

	mu      sync.Mutex
	nets    map[string]*network
	leases  map[string]*lease // by job id
	gen     uint64            // bumped at every change to save (save.go)
	snapGen uint64            // the generation of the newest snapshot taken

	// kernel bounds how many jobs' kernel work (plumb, teardown) runs at
	// once. Most of it waits for the kernel's rtnl lock, which lets one
	// caller in at a time anyway; every caller blocked there holds an OS
	// thread, and the Go runtime keeps each thread it ever made, so a
	// burst of 32 attaches grew netd by ~50 threads and 3 MiB for good.
	kernel chan struct{}
	// torn is signalled (on mu) each time a detached job's teardown ends;
	// teardowns counts those under way, for Close and Purge.
	torn      *sync.Cond
	teardowns sync.WaitGroup

	spares  int            // namespaces made ahead per network (spare.go)
	fills   sync.WaitGroup // spares being made
	closing bool           // no more spares (m.mu): Close or Purge began

	stopWatch chan struct{} // closed to stop the periodic check (watch.go)
	watchDone chan struct{}
	stopOnce  sync.Once
}

var _ netdapi.Netd = (*Manager)(nil)

// Open loads the saved state, brings the kernel in line with it and starts
// the DNS responders. Jobs attached before a restart keep their network.
func Open(opts Options) (*Manager, error) {
	if opts.BridgeCIDR == "" {
		opts.BridgeCIDR = DefaultBridgeCIDR
	}
	if opts.IsolatedCIDR == "" {
		opts.IsolatedCIDR = DefaultIsolatedCIDR
	}
	if opts.ResolvConf == "" {
		opts.ResolvConf = "/etc/resolv.conf"
	}
	store, err := state.Open(opts.StateDir)
	if err != nil {
		return nil, err
	}
	st, err := store.Load()
	if err != nil {
		return nil, err
	}
	fw, err := firewall.New()
	if err != nil {
		return nil, err
	}
	boot, err := state.BootID()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(opts.RunDir, "netns"), 0o700); err != nil {
		return nil, fmt.Errorf("netns dir: %w", err)
	}
	ups, err := dns.Upstreams(opts.ResolvConf)
	if err != nil {
		opts.Log.Warn().Err(err).Msg("no host resolvers: jobs resolve job names only")
	}
	m := &Manager{opts: opts, log: opts.Log, store: store, fw: &lockedFirewall{fw: fw}, upstreams: ups, bootID: boot,
		nets: map[string]*network{}, leases: map[string]*lease{}, kernel: make(chan struct{}, kernelWorkers)}
	m.torn = sync.NewCond(&m.mu)
	switch {
	case opts.Spares == 0:
		m.spares = DefaultSpares
	case opts.Spares > 0:
		m.spares = opts.Spares
	}
	if err := m.load(st); err != nil {
		return nil, err
	}
	if err := m.reconcile(); err != nil {
		m.Close()
		return nil, err
	}
	if opts.CheckInterval == 0 {
		opts.CheckInterval = DefaultCheckInterval
	}
	if opts.CheckInterval > 0 {
		m.stopWatch, m.watchDone = make(chan struct{}), make(chan struct{})
		go m.watch(opts.CheckInterval, m.stopWatch, m.watchDone)
	}
	m.mu.Lock()
	for _, n := range m.nets {
		m.refill(n)
	}
	m.mu.Unlock()
	return m, nil
}

// load builds the in-memory state from the saved one, adding the built-ins.
func (m *Manager) load(st state.State) error {
	for _, sn := range st.Networks {
		p, err := netip.ParsePrefix(sn.CIDR)
		if err != nil {
			return fmt.Errorf("saved network %q: %w", sn.Name, err)
		}
		n := &network{name: sn.Name, bridge: sn.Bridge, prefix: p, builtin: sn.Builtin,
			isolated: sn.Name == netdapi.Isolated, pool: ipam.New(p)}
		if a, err := netip.ParseAddr(sn.Next); err == nil {
			n.pool.SetNext(a)
		}
		m.nets[n.name] = n
	}
	for _, b := range []struct{ name, bridge, cidr string }{
		{netdapi.Bridge, BridgeBridge, m.opts.BridgeCIDR},
		{netdapi.Isolated, IsolatedBridge, m.opts.IsolatedCIDR},
	} {
		if _, ok := m.nets[b.name]; ok {
			continue
		}
		p, err := netip.ParsePrefix(b.cidr)
		if err != nil || p.Masked() != p || !p.Addr().Is4() {
			return fmt.Errorf("built-in network %q: bad CIDR %q", b.name, b.cidr)
		}
		m.nets[b.name] = &network{name: b.name, bridge: b.bridge, prefix: p, builtin: true,
			isolated: b.name == netdapi.Isolated, pool: ipam.New(p)}
	}
	for _, l := range st.Leases {
		if l.Network == netdapi.None {
			// Nothing in the kernel tells whether a none job still runs:
			// its lease lasts as long as the boot it was made in. (A lease
			// of a netd before boot ids has a pin instead.)
			if st.BootID == m.bootID || nsfile.Pinned(m.nsPath(l.JobID)) {
				m.leases[l.JobID] = &lease{Lease: l}
			}
			continue
		}
		n, ok := m.nets[l.Network]
		ip, err := netip.ParseAddr(l.IP)
		if !ok || err != nil || n.pool.Reserve(ip, l.JobID) != nil {
			m.log.Warn().Str("job_id", l.JobID).Str("network", l.Network).Msg("dropping unusable saved lease")
			continue
		}
		m.leases[l.JobID] = &lease{Lease: l}
	}
	return nil
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// sortedNets is built-ins first (bridge, isolated), then by name.
func (m *Manager) sortedNets() []*network {
	nets := make([]*network, 0, len(m.nets))
	for _, n := range m.nets {
		nets = append(nets, n)
	}
	slices.SortFunc(nets, func(a, b *network) int {
		if a.builtin != b.builtin {
			if a.builtin {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	return nets
}

// Close stops the periodic check and the DNS responders, removes the
// namespaces made ahead (spare.go), and saves the leases not saved yet (of
// "none" jobs, see Attach). Bridges, rules and jobs' namespaces stay:
// running jobs keep their network while netd is down.
func (m *Manager) Close() error {
	m.stopWatching()
	var errs []error
	if err := m.stopSpares(); err != nil {
		errs = append(errs, fmt.Errorf("remove namespaces made ahead: %w", err))
	}
	m.teardowns.Wait()
	m.mu.Lock()
	gen := m.gen
	m.mu.Unlock()
	if err := m.persist(gen, nil); err != nil {
		errs = append(errs, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range m.nets {
		if n.dns != nil {
			errs = append(errs, n.dns.Close())
			n.dns = nil
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) nsPath(jobID string) string {
	return filepath.Join(m.opts.RunDir, "netns", jobID)
}

// vethName is the host end of a job's veth pair: "jv" and a hash of the job
// id, short enough for an interface name and the same after a restart.
func vethName(jobID string) string {
	h := sha256.Sum256([]byte(jobID))
	return "jv" + hex.EncodeToString(h[:])[:12]
}

// bridgeName is "joblet-<name>" when that fits in an interface name
// (15 bytes), else "joblet-" and a hash of the name.
func bridgeName(name string) string {
	if b := "joblet-" + name; len(b) <= 15 {
		return b
	}
	h := sha256.Sum256([]byte(name))
	return "joblet-" + hex.EncodeToString(h[:])[:8]
}

func hostname(l state.Lease) string {
	if l.Name != "" {
		return l.Name
	}
	h := "job-" + strings.ToLower(l.JobID)
	if len(h) > 63 {
		h = h[:63]
	}
	return h
}

// attachment is what the isolator needs of a lease; the caller holds m.mu.
// A none job gets no NetnsPath: its init makes a namespace of its own,
// with loopback only (netd made and pinned one before, which cost more
// than the rest of a job's start in netd, for the same result).
func (m *Manager) attachment(l state.Lease) netdapi.Attachment {
	a := netdapi.Attachment{JobID: l.JobID, Network: l.Network, IP: l.IP, Hostname: hostname(l)}
	a.Hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	if n, ok := m.nets[l.Network]; ok {
		a.NetnsPath = m.pinPath(l)
		a.Gateway = n.gateway().String()
		a.ResolvConf = "nameserver " + a.Gateway + "\n"
		a.Hosts += l.IP + "\t" + a.Hostname + "\n"
	} else {
		a.Hosts += "127.0.1.1\t" + a.Hostname + "\n"
	}
	return a
}

// setNames publishes a job's names in its network's responder; isolated
// jobs are nobody's neighbours, so their names are not served.
func (m *Manager) setNames(l state.Lease) {
	n, ok := m.nets[l.Network]
	if !ok || n.isolated || n.dns == nil {
		return
	}
	ip := netip.MustParseAddr(l.IP)
	n.dns.Set("job-"+strings.ToLower(l.JobID), ip)
	if l.Name != "" {
		n.dns.Set(l.Name, ip)
	}
}

func (m *Manager) deleteNames(l state.Lease) {
	n, ok := m.nets[l.Network]
	if !ok || n.dns == nil {
		return
	}
	n.dns.Delete("job-" + strings.ToLower(l.JobID))
	if l.Name != "" {
		n.dns.Delete(l.Name)
	}
}

// Attach implements netdapi.Netd. The kernel work and the save of the
// lease run outside m.mu and at the same time, so attaches of several jobs
// overlap and share one write of the state (save.go). The lease is saved
// before Attach returns: a crash before that leaves at most a veth pair
// and a pin that the next netd removes as nobody's, and the caller, whose
// call failed, attaches again.
//
// A none job has nothing in the kernel (see attachment), so its lease is
// only counted (ListNetworks) and not saved at once: the next save of any
// change, or Close, writes it. A crash of netd before that forgets the
// job, which costs nothing but its count; its Detach is then a no-op.
func (m *Manager) Attach(ctx context.Context, jobID, netName, name string) (netdapi.Attachment, error) {
	if err := validate.JobID(jobID); err != nil {
		return netdapi.Attachment{}, err
	}
	if err := validate.JobName(name); err != nil {
		return netdapi.Attachment{}, err
	}
	if netName == "" {
		netName = netdapi.Bridge
	}
	log := m.log.With().Str("job_id", jobID).Str("network", netName).Logger()

	m.mu.Lock()
	o, err := m.settled(ctx, jobID)
	if err != nil {
		m.mu.Unlock()
		return netdapi.Attachment{}, err
	}
	if o != nil {
		defer m.mu.Unlock()
		if o.Network != netName || o.Name != name {
			return netdapi.Attachment{}, errdefs.Errorf(errdefs.ErrAlreadyExists,
				"job %s is attached to network %q already", jobID, o.Network)
		}
		return m.attachment(o.Lease), nil
	}
	l := &lease{Lease: state.Lease{JobID: jobID, Network: netName, Name: name}}
	n, ok := m.nets[netName]
	if !ok {
		if netName != netdapi.None {
			m.mu.Unlock()
			return netdapi.Attachment{}, errdefs.Errorf(errdefs.ErrNotFound, "network %q does not exist", netName)
		}
		l.gen = m.changed()
		m.leases[jobID] = l
		a := m.attachment(l.Lease)
		m.mu.Unlock()
		log.Info().Msg("attached")
		return a, nil
	}
	if name != "" && !n.isolated {
		for _, o := range m.leases {
			if o.Network == netName && o.Name == name {
				m.mu.Unlock()
				return netdapi.Attachment{}, errdefs.Errorf(errdefs.ErrAlreadyExists,
					"name %q is taken in network %q by job %s", name, netName, o.JobID)
			}
		}
	}
	// A namespace made ahead has all the kernel work done: the job takes
	// it, and the Attach only saves the lease.
	s, ready := m.takeSpare(n, jobID)
	if ready {
		l.IP, l.Veth, l.Netns = s.ip.String(), s.veth, s.pin
	} else {
		ip, err := n.pool.Allocate(jobID)
		if errors.Is(err, errdefs.ErrResourceExhausted) && n.tearing+n.filling > 0 {
			// A job detached from a full network frees its address once
			// its veth pair is gone, and a spare being made holds one: wait
			// for either rather than refuse, then start over (the lock was
			// let go: the job's lease or its name may have been taken
			// meanwhile).
			m.torn.Wait()
			m.mu.Unlock()
			return m.Attach(ctx, jobID, netName, name)
		}
		if err != nil {
			m.mu.Unlock()
			return netdapi.Attachment{}, err
		}
		l.IP, l.Veth = ip.String(), vethName(jobID)
	}
	l.busy, l.gen = make(chan struct{}), m.changed()
	m.leases[jobID] = l
	m.mu.Unlock()

	saved := make(chan error, 1)
	go func() {
		// A lease that cannot be saved is left out of every later
		// snapshot at once, before another save can write it.
		saved <- m.persist(l.gen, func() { l.leaving = true })
	}()
	var perr error
	if !ready {
		perr = m.jobKernelWork(func() error { return m.plumb(l.Lease, n) })
	}
	serr := <-saved
	if perr != nil || serr != nil {
		err := fmt.Errorf("save lease: %w", serr)
		if perr != nil {
			log.Error().Err(perr).Msg("attach failed")
			err = fmt.Errorf("prepare network of job %s: %w", jobID, perr)
		}
		// A lease saved already stays in the file until the next save;
		// without its pin, a next netd would end it.
		if terr := m.jobKernelWork(func() error { return m.teardown(l.Lease) }); terr != nil {
			log.Error().Err(terr).Msg("undo a failed attach")
		}
		m.mu.Lock()
		m.dropLease(l)
		m.mu.Unlock()
		return netdapi.Attachment{}, err
	}
	m.mu.Lock()
	m.settle(l)
	m.setNames(l.Lease)
	a := m.attachment(l.Lease)
	// The next spare is made once this job's lease is saved: it would
	// compete with that for the CPUs and the kernel.
	m.refill(n)
	m.mu.Unlock()
	log.Info().Str("ip", l.IP).Bool("made_ahead", ready).Msg("attached")
	return a, nil
}

// settled is the job's lease once no call for it is under way, or nil;
// the caller holds m.mu, which is released while waiting.
func (m *Manager) settled(ctx context.Context, jobID string) (*lease, error) {
	for {
		l, ok := m.leases[jobID]
		if !ok || l.busy == nil {
			return l, nil
		}
		busy := l.busy
		m.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			m.mu.Lock()
			return nil, fmt.Errorf("wait for the network of job %s: %w", jobID, ctx.Err())
		}
		m.mu.Lock()
	}
}

// settle ends the call under way for a lease; the caller holds m.mu.
func (m *Manager) settle(l *lease) {
	close(l.busy)
	l.busy = nil
}

// dropLease forgets a lease, frees its address and lets calls waiting for
// it go on; the caller holds m.mu.
func (m *Manager) dropLease(l *lease) {
	if m.leases[l.JobID] == l {
		delete(m.leases, l.JobID)
	}
	if n, ok := m.nets[l.Network]; ok && l.IP != "" {
		n.pool.Release(netip.MustParseAddr(l.IP))
	}
	if l.busy != nil {
		m.settle(l)
	}
}

// Detach implements netdapi.Netd. A job with a namespace (any network but
// none) is ended by unpinning its namespace: once the pin is gone, the
// lease is over whatever the saved state says, since a next netd ends
// every saved lease whose pin is gone (reconcile). So Detach unpins, takes
// the lease out of memory (the network no longer counts the job) and
// answers; the save that drops the lease from the file, then the removal
// of the veth pair (~20 ms of the kernel's here), run after that, and the
// address is freed only once both are done. Neither the job's end nor
// another job's Attach waits for them; RemoveNetwork, and an Attach to a
// network that is full, wait for the network's detaches under way.
//
// A none lease has no pin: one that a snapshot may hold leaves the saved
// state before Detach answers (a full disk refuses the Detach and keeps
// it, and the caller retries), as a pin whose unmount fails does.
func (m *Manager) Detach(ctx context.Context, jobID string) error {
	if err := validate.JobID(jobID); err != nil {
		return err
	}
	m.mu.Lock()
	l, err := m.settled(ctx, jobID)
	if err != nil || l == nil {
		m.mu.Unlock()
		return err
	}
	l.busy = make(chan struct{})
	m.mu.Unlock()
	unpinned := l.Veth != "" && nsfile.Remove(m.pinPath(l.Lease)) == nil
	m.mu.Lock()
	// A lease no snapshot ever held (a none job's, see Attach) needs no
	// save to end, nor one whose pin is gone.
	if !unpinned && m.inFile(l) {
		l.leaving = true
		gen := m.changed()
		m.mu.Unlock()
		err := m.persist(gen, func() { l.leaving = false })
		m.mu.Lock()
		if err != nil {
			// Nothing changed then (a full disk): the caller retries.
			m.settle(l)
			m.mu.Unlock()
			return fmt.Errorf("save state: %w", err)
		}
	}
	delete(m.leases, jobID)
	m.deleteNames(l.Lease)
	m.settle(l)
	n := m.nets[l.Network]
	if n != nil {
		n.tearing++
	}
	m.teardowns.Add(1)
	var gen uint64 // the save that drops the lease, if still to do
	if unpinned && m.inFile(l) {
		gen = m.changed()
	}
	m.mu.Unlock()
	if l.Veth == "" {
		m.finishDetach(l.Lease, n, 0) // a pin at most: no kernel work to wait for
		return nil
	}
	go m.finishDetach(l.Lease, n, gen)
	return nil
}

// detachSaveRetry is how often finishDetach tries again to save the state
// without an unpinned lease (a full disk).
const detachSaveRetry = time.Second

// finishDetach saves the state without a detached job's lease (unless gen
// is 0: saved already, or never saved), removes its veth pair and pin,
// then frees its address on n (nil: a network without addresses, or
// removed meanwhile). Until the save is done the address stays the job's:
// a file that still holds the lease never holds another one with the
// same address. A save that fails (a full disk) is tried again until it
// succeeds or netd closes, whose own save drops the lease.
func (m *Manager) finishDetach(l state.Lease, n *network, gen uint64) {
	defer m.teardowns.Done()
	log := m.log.With().Str("job_id", l.JobID).Str("network", l.Network).Logger()
	for gen != 0 {
		err := m.persist(gen, nil)
		if err == nil {
			break
		}
		m.mu.Lock()
		closing := m.closing
		m.mu.Unlock()
		if closing {
			break
		}
		log.Warn().Err(err).Stringer("retry_in", detachSaveRetry).Msg("cannot save the state without a detached job; its address stays taken until then")
		time.Sleep(detachSaveRetry)
	}
	err := m.jobKernelWork(func() error { return m.teardown(l) })
	m.mu.Lock()
	if n != nil {
		if l.IP != "" {
			n.pool.Release(netip.MustParseAddr(l.IP))
		}
		n.tearing--
		if m.nets[n.name] == n {
			m.refill(n) // a full network had no address for its spares
		}
	}
	m.torn.Broadcast()
	m.mu.Unlock()
	if err != nil {
		// The next netd's reconcile removes what is left.
		log.Error().Err(err).Msg("detach teardown")
		return
	}
	log.Info().Msg("detached")
}

// CreateNetwork implements netdapi.Netd.
func (m *Manager) CreateNetwork(ctx context.Context, name, cidr string) (netdapi.Network, error) {
	if err := validate.NetworkName(name); err != nil {
		return netdapi.Network{}, err
	}
	m.saveMu.Lock()
	defer m.saveMu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.nets[name]; ok {
		return netdapi.Network{}, errdefs.Errorf(errdefs.ErrAlreadyExists, "network %q exists already", name)
	}
	taken, err := m.taken()
	if err != nil {
		return netdapi.Network{}, err
	}
	p, err := validate.CIDR(cidr, taken)
	if err != nil {
		return netdapi.Network{}, err
	}
	n := &network{name: name, bridge: bridgeName(name), prefix: p, pool: ipam.New(p)}
	for _, o := range m.nets {
		if o.bridge == n.bridge {
			return netdapi.Network{}, errdefs.Errorf(errdefs.ErrAlreadyExists,
				"network %q would share bridge %s with %q: choose another name", name, n.bridge, o.name)
		}
	}
	if err := m.setUp(n); err != nil {
		m.tearDownNetwork(n)
		return netdapi.Network{}, fmt.Errorf("create network %q: %w", name, err)
	}
	m.nets[name] = n
	if err := m.saveLocked(); err != nil {
		delete(m.nets, name)
		m.tearDownNetwork(n)
		return netdapi.Network{}, fmt.Errorf("save state: %w", err)
	}
	m.refill(n)
	m.log.Info().Str("network", name).Str("cidr", p.String()).Str("bridge", n.bridge).Msg("network created")
	return m.view(n), nil
}

// setUp makes a new network's bridge, rules and responder.
func (m *Manager) setUp(n *network) error {
	if err := ensureBridge(n); err != nil {
		return err
	}
	if err := m.fw.Add(n.fw()); err != nil {
		return err
	}
	return m.startDNS(n)
}

// tearDownNetwork undoes setUp as far as it got.
func (m *Manager) tearDownNetwork(n *network) error {
	var errs []error
	if n.dns != nil {
		errs = append(errs, n.dns.Close())
		n.dns = nil
	}
	errs = append(errs, m.fw.Remove(n.fw()), deleteLink(n.bridge))
	return errors.Join(errs...)
}

func (m *Manager) startDNS(n *network) error {
	r, err := dns.Start(netip.AddrPortFrom(n.gateway(), 53), m.upstreams,
		m.log.With().Str("network", n.name).Logger())
	if err != nil {
		return err
	}
	n.dns = r
	return nil
}

// RemoveNetwork implements netdapi.Netd.
func (m *Manager) RemoveNetwork(ctx context.Context, name string) error {
	if slices.Contains(validate.Reserved, name) {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "network %q is built in and cannot be removed", name)
	}
	var n *network
	for {
		m.saveMu.Lock()
		m.mu.Lock()
		var ok bool
		if n, ok = m.nets[name]; !ok {
			m.mu.Unlock()
			m.saveMu.Unlock()
			return errdefs.Errorf(errdefs.ErrNotFound, "network %q does not exist", name)
		}
		if jobs := m.jobsOn(name); jobs > 0 {
			m.mu.Unlock()
			m.saveMu.Unlock()
			return errdefs.Errorf(errdefs.ErrFailedPrecondition, "network %q is used by %d job(s)", name, jobs)
		}
		if n.tearing+n.filling == 0 {
			break
		}
		// Jobs detached just before, and spares being made: their veth
		// pairs go first, so the bridge goes with nothing left on it. A
		// detached job's teardown saves the state first (finishDetach):
		// it needs m.saveMu, which is let go for the wait (m.mu is held
		// until the wait, so no Broadcast is missed).
		m.saveMu.Unlock()
		m.torn.Wait()
		m.mu.Unlock()
	}
	defer m.saveMu.Unlock()
	defer m.mu.Unlock()
	delete(m.nets, name)
	if err := m.saveLocked(); err != nil {
		m.nets[name] = n
		return fmt.Errorf("save state: %w", err)
	}
	// Gone from m.nets: no spare of it is made any more.
	if err := errors.Join(m.dropSpares(n), m.tearDownNetwork(n)); err != nil {
		m.log.Error().Err(err).Str("network", name).Msg("remove network")
		return fmt.Errorf("remove network %q: %w", name, err)
	}
	m.log.Info().Str("network", name).Msg("network removed")
	return nil
}

func (m *Manager) jobsOn(name string) int {
	jobs := 0
	for _, l := range m.leases {
		if l.Network == name {
			jobs++
		}
	}
	return jobs
}

func (m *Manager) view(n *network) netdapi.Network {
	return netdapi.Network{Name: n.name, CIDR: n.prefix.String(), Bridge: n.bridge, Jobs: m.jobsOn(n.name), Builtin: n.builtin}
}

// ListNetworks implements netdapi.Netd.
func (m *Manager) ListNetworks(ctx context.Context) ([]netdapi.Network, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []netdapi.Network{{Name: netdapi.None, Jobs: m.jobsOn(netdapi.None), Builtin: true}}
	for _, n := range m.sortedNets() {
		out = append(out, m.view(n))
	}
	return out, nil
}

// taken is every range a new network must not overlap: the networks, and
// the host's routes and addresses other than netd's own bridges.
func (m *Manager) taken() ([]validate.Taken, error) {
	var t []validate.Taken
	own := map[string]bool{}
	for _, n := range m.nets {
		t = append(t, validate.Taken{Prefix: n.prefix, What: fmt.Sprintf("network %q", n.name)})
		own[n.bridge] = true
	}
	host, err := hostRanges(own)
	if err != nil {
		return nil, err
	}
	return append(t, host...), nil
}

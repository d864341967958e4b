package manager

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/joblet-dev/joblet/netd/nsfile"
	"github.com/joblet-dev/joblet/netd/state"
	"github.com/joblet-dev/joblet/proto/netdapi"
)

func savedLeases(t testing.TB, m *Manager) map[string]state.Lease {
	t.Helper()
	st, err := m.store.Load()
	must(t, err)
	out := map[string]state.Lease{}
	for _, l := range st.Leases {
		out[l.JobID] = l
	}
	return out
}

// Attaches at once share the saves (save.go), and yet each returns only
// once its lease is in the saved state; detaches at once each return once
// their job's pin is gone (which ends the lease for any later netd, see
// TestCrashAfterDetachAnswered), and their saves take the leases out of
// the file before the addresses are freed.
func TestConcurrentAttachesAreSaved(t *testing.T) {
	e := setup(t)
	e.opts.CheckInterval = -1
	m := e.open(t)
	ctx := context.Background()
	const jobs = 24
	var wg sync.WaitGroup
	ips, pins := make([]string, jobs), make([]string, jobs)
	for i := range jobs {
		wg.Go(func() {
			id := fmt.Sprint("c", i)
			a, err := m.Attach(ctx, id, netdapi.Bridge, fmt.Sprint("name", i))
			if err != nil {
				t.Errorf("attach %s: %v", id, err)
				return
			}
			ips[i], pins[i] = a.IP, a.NetnsPath
			if l, ok := savedLeases(t, m)[id]; !ok || l.IP != a.IP {
				t.Errorf("attach %s returned before its lease was saved: %+v", id, l)
			}
		})
	}
	wg.Wait()
	if slices.Sort(ips); len(slices.Compact(ips)) != jobs {
		t.Errorf("addresses not distinct: %v", ips)
	}
	if got := len(hostLinks(t, "jv")); got != jobs {
		t.Errorf("%d veths for %d jobs", got, jobs)
	}
	for i := range jobs {
		wg.Go(func() {
			id := fmt.Sprint("c", i)
			if err := m.Detach(ctx, id); err != nil {
				t.Errorf("detach %s: %v", id, err)
				return
			}
			if _, err := os.Stat(pins[i]); !os.IsNotExist(err) {
				t.Errorf("detach %s returned with its namespace still pinned: %v", id, err)
			}
		})
	}
	wg.Wait()
	m.teardowns.Wait() // the saves and the veth pairs go after Detach returns
	if got := hostLinks(t, "jv"); len(got) != 0 {
		t.Errorf("veths left: %v", got)
	}
	if got := savedLeases(t, m); len(got) != 0 {
		t.Errorf("leases still saved after the detaches: %v", got)
	}
}

// A crash after an Attach's kernel work and before its save (the lease
// missing from the file, its veth pair and pin in the kernel) is
// reconciled: the next netd removes both and the address is free again.
// A crash after the save and before the kernel work (the lease saved, no
// pin) ends the lease.
func TestCrashAroundAttachSave(t *testing.T) {
	e := setup(t)
	e.opts.CheckInterval = -1
	m := e.open(t)
	file := filepath.Join(e.opts.StateDir, "state.json")
	before, err := os.ReadFile(file)
	must(t, err)
	lost := attach(t, m, "lost", netdapi.Bridge, "")
	kept := attach(t, m, "unplumbed", netdapi.Bridge, "")
	must(t, m.Close())
	// The crash images: "lost" never saved; "unplumbed" saved, its
	// kernel work never done.
	must(t, m.teardown(m.leases["unplumbed"].Lease))
	after, err := os.ReadFile(file)
	must(t, err)
	must(t, os.WriteFile(file, before, 0o600))

	m2 := e.open(t)
	if got := hostLinks(t, "jv"); len(got) != 0 {
		t.Errorf("veth of a lease never saved kept: %v", got)
	}
	if _, err := os.Stat(lost.NetnsPath); !os.IsNotExist(err) {
		t.Errorf("pin of a lease never saved kept: %v", err)
	}
	if a := attach(t, m2, "next", netdapi.Bridge, ""); a.IP != lost.IP {
		t.Errorf("next job got %s, want the unsaved lease's %s back", a.IP, lost.IP)
	}
	must(t, m2.Close())

	must(t, os.WriteFile(file, after, 0o600))
	m3 := e.open(t)
	if _, ok := m3.leases["unplumbed"]; ok {
		t.Errorf("lease without a namespace kept")
	}
	if _, ok := savedLeases(t, m3)[kept.JobID]; ok {
		t.Errorf("lease without a namespace still saved")
	}
	detachAll(t, m3)
	if got := hostLinks(t, "jv"); len(got) != 0 {
		t.Errorf("veths left: %v", got)
	}
}

// A none job costs netd no kernel work and no write: its lease is saved
// with the next change or at Close, kept across a restart in the same
// boot, and ended by a new boot. A Detach writes only to take out a lease
// the file holds.
func TestNoneLeases(t *testing.T) {
	e := setup(t)
	e.opts.CheckInterval = -1
	m := e.open(t)
	ctx := context.Background()
	file := filepath.Join(e.opts.StateDir, "state.json")
	st0, err := os.Stat(file)
	must(t, err)
	attach(t, m, "n1", netdapi.None, "")
	attach(t, m, "n2", netdapi.None, "")
	if st, _ := os.Stat(file); !os.SameFile(st, st0) {
		t.Errorf("a none attach wrote the state")
	}
	must(t, m.Detach(ctx, "n2"))
	if st, _ := os.Stat(file); !os.SameFile(st, st0) {
		t.Errorf("the detach of a lease never saved wrote the state")
	}
	if pins, _ := os.ReadDir(filepath.Join(e.opts.RunDir, "netns")); len(pins) != 0 {
		t.Errorf("pins of none jobs: %v", pins)
	}
	nets, _ := m.ListNetworks(ctx)
	if nets[0].Name != netdapi.None || nets[0].Jobs != 1 {
		t.Errorf("none counts %+v, want 1 job", nets[0])
	}
	must(t, m.Close())
	if _, ok := savedLeases(t, m)["n1"]; !ok {
		t.Errorf("Close did not save the none lease")
	}

	m2 := e.open(t)
	if nets, _ := m2.ListNetworks(ctx); nets[0].Jobs != 1 {
		t.Errorf("none counts %d jobs after a restart, want 1", nets[0].Jobs)
	}
	// The lease is in the file: its detach takes it out.
	must(t, m2.Detach(ctx, "n1"))
	if _, ok := savedLeases(t, m2)["n1"]; ok {
		t.Errorf("detached none lease still saved")
	}
	attach(t, m2, "n3", netdapi.None, "")
	must(t, m2.Close())

	// Another boot: none jobs are gone with it.
	st, err := m2.store.Load()
	must(t, err)
	if len(st.Leases) != 1 || st.BootID != m2.bootID {
		t.Fatalf("saved %+v", st)
	}
	st.BootID = "an-earlier-boot"
	must(t, m2.store.Save(st))
	m3 := e.open(t)
	if len(m3.leases) != 0 {
		t.Errorf("none lease of another boot kept: %v", m3.leases)
	}
	// A none lease of a netd before boot ids has a pin: kept while pinned.
	must(t, nsfile.Create(filepath.Join(e.opts.RunDir, "netns", "old")))
	st.BootID, st.Leases = "", []state.Lease{{JobID: "old", Network: netdapi.None}}
	must(t, m3.Close())
	must(t, m3.store.Save(st))
	m4 := e.open(t)
	if _, ok := m4.leases["old"]; !ok {
		t.Errorf("pinned none lease of an older netd dropped")
	}
	must(t, m4.Detach(ctx, "old"))
	if pins, _ := os.ReadDir(filepath.Join(e.opts.RunDir, "netns")); len(pins) != 0 {
		t.Errorf("pin left: %v", pins)
	}
}

// A burst of attaches and detaches leaves netd with about as many OS
// threads as before: the callers wait for their turn at the kernel
// (Manager.kernel) in goroutines, not each blocked in the kernel on a
// thread of its own, which the Go runtime would keep for good.
func TestConcurrentAttachesKeepThreadsFew(t *testing.T) {
	e := setup(t)
	e.opts.CheckInterval = -1
	m := e.open(t)
	ctx := context.Background()
	const jobs = 32
	before := threads(t)
	var wg sync.WaitGroup
	for i := range jobs {
		wg.Go(func() {
			id := fmt.Sprint("t", i)
			if _, err := m.Attach(ctx, id, netdapi.Bridge, ""); err != nil {
				t.Errorf("attach %s: %v", id, err)
				return
			}
			if err := m.Detach(ctx, id); err != nil {
				t.Errorf("detach %s: %v", id, err)
			}
		})
	}
	wg.Wait()
	m.teardowns.Wait()
	// The kernel workers, the saver and a few the runtime makes for
	// itself; without the bound, 29 here.
	const most = 8
	grew := threads(t) - before
	t.Logf("%d jobs at once: %d more OS threads", jobs, grew)
	if grew > most {
		t.Errorf("%d jobs at once left %d more OS threads (at most %d expected)", jobs, grew, most)
	}
}

// threads is how many OS threads this process has.
func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	must(t, err)
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			must(t, err)
			return n
		}
	}
	t.Fatal("no Threads: line in /proc/self/status")
	return 0
}

// A Detach answers once the job's namespace is unpinned, before the save
// that drops its lease: a netd that dies in between leaves a file that
// still holds the lease (and maybe its veth pair), and the next netd ends
// that lease (its pin is gone), removes the veth pair and frees the
// address, while a running job's lease is kept.
func TestCrashAfterDetachAnswered(t *testing.T) {
	e := setup(t)
	e.opts.CheckInterval = -1
	m := e.open(t)
	ctx := context.Background()
	file := filepath.Join(e.opts.StateDir, "state.json")
	gone := attach(t, m, "gone", netdapi.Bridge, "")
	stays := attach(t, m, "stays", netdapi.Bridge, "")
	image, err := os.ReadFile(file)
	must(t, err)
	veth := m.leases["gone"].Veth
	must(t, m.Detach(ctx, "gone"))
	if _, err := os.Stat(gone.NetnsPath); !os.IsNotExist(err) {
		t.Errorf("pin of a detached job after Detach answered: %v", err)
	}
	if nets, _ := m.ListNetworks(ctx); nets[1].Jobs != 1 {
		t.Errorf("bridge counts %d jobs right after the Detach, want 1", nets[1].Jobs)
	}
	must(t, m.Close())
	if _, ok := savedLeases(t, m)["gone"]; ok {
		t.Errorf("detached lease still saved after Close")
	}
	// The crash image: the lease still in the file, its veth pair still
	// there, its pin gone.
	must(t, os.WriteFile(file, image, 0o600))
	must(t, netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: veth}, PeerName: "crashpeer0"}))

	m2 := e.open(t)
	if _, ok := m2.leases["gone"]; ok {
		t.Errorf("lease of an unpinned namespace kept after the restart")
	}
	if _, ok := savedLeases(t, m2)["gone"]; ok {
		t.Errorf("lease of an unpinned namespace still saved after the restart")
	}
	if got := hostLinks(t, veth); len(got) != 0 {
		t.Errorf("veth of the detached job left: %v", got)
	}
	if _, ok := m2.leases["stays"]; !ok {
		t.Errorf("running job's lease lost")
	}
	m2.mu.Lock()
	if err := m2.nets[netdapi.Bridge].pool.Reserve(netip.MustParseAddr(gone.IP), "probe"); err != nil {
		t.Errorf("the detached job's address is not free after the restart: %v", err)
	} else {
		m2.nets[netdapi.Bridge].pool.Release(netip.MustParseAddr(gone.IP))
	}
	m2.mu.Unlock()
	next := attach(t, m2, "next", netdapi.Bridge, "")
	if _, err := dial(stays.NetnsPath, next.IP+probe, 2*time.Second); err != nil {
		t.Errorf("running job cannot reach the next job: %v", err)
	}
	detachAll(t, m2)
	must(t, m2.Close())
	if got := hostLinks(t, "jv"); len(got) != 0 {
		t.Errorf("veths left: %v", got)
	}
}

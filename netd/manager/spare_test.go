package manager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/proto/errdefs"
	"github.com/joblet-dev/joblet/proto/netdapi"
)

// sparesOf is the pin names of a network's ready spares.
func sparesOf(m *Manager, network string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var pins []string
	if n, ok := m.nets[network]; ok {
		for _, s := range n.spares {
			pins = append(pins, s.pin)
		}
	}
	return pins
}

// waitSpares waits until a network has want spares ready and none being
// made, and returns their pin names.
func waitSpares(t testing.TB, m *Manager, network string, want int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m.mu.Lock()
		filling := m.nets[network].filling
		m.mu.Unlock()
		pins := sparesOf(m, network)
		if len(pins) == want && filling == 0 {
			return pins
		}
		if time.Now().After(deadline) {
			t.Fatalf("network %s has %d spares ready and %d being made, want %d ready", network, len(pins), filling, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pins lists netd's namespace pins.
func pins(t *testing.T, e *env) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(e.opts.RunDir, "netns"))
	must(t, err)
	var names []string
	for _, d := range entries {
		names = append(names, d.Name())
	}
	return names
}

// crash stops m as a kill would: its sockets closed, nothing removed from
// the kernel, no last save.
func crash(m *Manager) {
	m.stopWatching()
	m.mu.Lock()
	m.closing = true
	m.mu.Unlock()
	m.fills.Wait()
	m.teardowns.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range m.nets {
		if n.dns != nil {
			n.dns.Close()
			n.dns = nil
		}
	}
}

// Jobs attached from namespaces made ahead reach each other, their names
// and the outside like jobs whose namespace their Attach made; the spares
// are made again; their leases survive a restart; Close, a crash and a
// restart, and Detach leave nothing of theirs.
func TestSpares(t *testing.T) {
	e := setup(t)
	e.opts.Spares = 2
	e.opts.CheckInterval = -1
	m := e.open(t)
	ctx := context.Background()
	ready := waitSpares(t, m, netdapi.Bridge, 2)
	waitSpares(t, m, netdapi.Isolated, 2)

	web := attach(t, m, "web1", netdapi.Bridge, "web")
	cli := attach(t, m, "cli1", "", "")
	iso := attach(t, m, "iso1", netdapi.Isolated, "")
	for _, a := range []netdapi.Attachment{web, cli} {
		if pin := filepath.Base(a.NetnsPath); !slices.Contains(ready, pin) {
			t.Errorf("job %s got namespace %s, not one made ahead (%v)", a.JobID, a.NetnsPath, ready)
		}
		if got := linksIn(t, a.NetnsPath); !slices.Equal(got, []string{"lo", "eth0"}) {
			t.Errorf("job %s has links %v, want lo and eth0", a.JobID, got)
		}
	}
	if web.Hostname != "web" || cli.Hostname != "job-cli1" || !strings.Contains(web.Hosts, web.IP+"\tweb\n") {
		t.Errorf("job's own names: %+v %+v", web, cli)
	}
	if got, err := dial(cli.NetnsPath, web.IP+probe, time.Second); err != nil || !strings.HasPrefix(got, cli.IP+":") {
		t.Errorf("cli -> web: %q %v", got, err)
	}
	for _, name := range []string{"web", "job-web1"} {
		if ip, err := resolve(cli.NetnsPath, cli.Gateway, name); err != nil || ip != web.IP {
			t.Errorf("cli resolves %s: %q %v, want %s", name, ip, err, web.IP)
		}
	}
	if ip, err := resolve(web.NetnsPath, web.Gateway, "example.test"); err != nil || ip != extAddr {
		t.Errorf("web resolves example.test: %q %v", ip, err)
	}
	for _, a := range []netdapi.Attachment{web, cli, iso} {
		if got, err := dial(a.NetnsPath, extService, time.Second); err != nil || !strings.HasPrefix(got, uplinkAddr+":") {
			t.Errorf("%s -> outside: %q %v", a.JobID, got, err)
		}
	}
	if _, err := dial(iso.NetnsPath, web.IP+probe, 500*time.Millisecond); err == nil {
		t.Error("isolated job from a spare reached a bridge job")
	}
	saved := savedLeases(t, m)
	if l := saved["web1"]; l.Netns != filepath.Base(web.NetnsPath) || l.IP != web.IP {
		t.Errorf("saved lease %+v, want namespace %s", l, web.NetnsPath)
	}
	// Taken spares are made again, and never handed out twice.
	again := waitSpares(t, m, netdapi.Bridge, 2)
	for _, p := range again {
		if slices.Contains(ready, p) {
			t.Errorf("spare %s still ready after a job took it", p)
		}
	}

	// Close removes the spares; the jobs keep their network, and a new
	// netd their leases.
	must(t, m.Close())
	if got := len(pins(t, e)); got != 3 {
		t.Errorf("%d pins after Close, want the 3 jobs': %v", got, pins(t, e))
	}
	if got := len(hostLinks(t, "jv")); got != 3 {
		t.Errorf("%d veths after Close, want the 3 jobs'", got)
	}
	m2 := e.open(t)
	if a, err := m2.Attach(ctx, "web1", netdapi.Bridge, "web"); err != nil || a != web {
		t.Errorf("re-attach after restart: %+v %v, want %+v", a, err, web)
	}
	if _, err := dial(cli.NetnsPath, web.IP+probe, time.Second); err != nil {
		t.Errorf("cli -> web after restart: %v", err)
	}
	waitSpares(t, m2, netdapi.Bridge, 2)
	waitSpares(t, m2, netdapi.Isolated, 2)

	// A crash leaves the spares in the kernel: the next netd removes them.
	crash(m2)
	if got := len(pins(t, e)); got != 7 {
		t.Errorf("%d pins at the crash, want 3 jobs' and 4 spares'", got)
	}
	m3 := e.open(t)
	m3.mu.Lock()
	m3.closing = true // make no new spares, to count what reconcile left
	m3.mu.Unlock()
	m3.fills.Wait()
	if got := pins(t, e); len(got) != 3 || !slices.Contains(got, filepath.Base(web.NetnsPath)) {
		t.Errorf("pins after a crash with spares: %v", got)
	}
	if got := len(hostLinks(t, "jv")); got != 3 {
		t.Errorf("%d veths after a crash with spares, want the 3 jobs'", got)
	}
	if _, err := dial(cli.NetnsPath, web.IP+probe, time.Second); err != nil {
		t.Errorf("cli -> web after a crash: %v", err)
	}
	detachAll(t, m3)
	m3.teardowns.Wait()
	if got, links := pins(t, e), hostLinks(t, "jv"); len(got)+len(links) != 0 {
		t.Errorf("left after detaching every job: pins %v, veths %v", got, links)
	}
}

// A network whose addresses are all held by jobs and spares still gives
// each job one, until the jobs hold them all; removing it and Purge
// remove its spares.
func TestSparesOfAFullNetwork(t *testing.T) {
	e := setup(t)
	e.opts.Spares = 2
	e.opts.CheckInterval = -1
	m := e.open(t)
	ctx := context.Background()
	if _, err := m.CreateNetwork(ctx, "tiny", "10.31.0.0/29"); err != nil {
		t.Fatal(err)
	}
	waitSpares(t, m, "tiny", 2)
	var ips []string
	for i := range 5 { // all 5 addresses: 2 spares' and 3 free
		ips = append(ips, attach(t, m, fmt.Sprint("t", i), "tiny", "").IP)
	}
	if slices.Sort(ips); len(slices.Compact(ips)) != 5 {
		t.Errorf("addresses not distinct: %v", ips)
	}
	if _, err := m.Attach(ctx, "t5", "tiny", ""); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Errorf("sixth job on a /29: %v", err)
	}
	// A spare made while the network is full holds an address: the next
	// job gets it.
	must(t, m.Detach(ctx, "t0"))
	waitSpares(t, m, "tiny", 1)
	attach(t, m, "t6", "tiny", "")
	if err := m.RemoveNetwork(ctx, "tiny"); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("remove network in use: %v", err)
	}
	for _, id := range []string{"t1", "t2", "t3", "t4", "t6"} {
		must(t, m.Detach(ctx, id))
	}
	waitSpares(t, m, "tiny", 2)
	must(t, m.RemoveNetwork(ctx, "tiny"))
	waitSpares(t, m, netdapi.Bridge, 2)
	waitSpares(t, m, netdapi.Isolated, 2)
	for _, p := range pins(t, e) {
		if !slices.Contains(append(sparesOf(m, netdapi.Bridge), sparesOf(m, netdapi.Isolated)...), p) {
			t.Errorf("pin %s left by the removed network", p)
		}
	}
	if got := len(hostLinks(t, "jv")); got != 4 {
		t.Errorf("%d veths after removing the network, want the built-ins' 4 spares", got)
	}
	if got := hostLinks(t, "joblet-tiny"); len(got) != 0 {
		t.Errorf("bridge left: %v", got)
	}

	attach(t, m, "b1", netdapi.Bridge, "")
	must(t, m.Purge())
	if got, links := pins(t, e), hostLinks(t, "j"); len(got)+len(links) != 0 {
		t.Errorf("left after Purge: pins %v, links %v", got, links)
	}
}

// The periodic check replaces a spare someone else damaged: no job gets
// it.
func TestCheckReplacesDamagedSpares(t *testing.T) {
	e := setup(t)
	e.opts.Spares = 2
	e.opts.CheckInterval = 100 * time.Millisecond
	m := e.open(t)
	ready := waitSpares(t, m, netdapi.Bridge, 2)
	must(t, deleteLink("jv"+strings.TrimPrefix(ready[0], "_spare-")))
	deadline := time.Now().Add(5 * time.Second)
	for slices.Contains(sparesOf(m, netdapi.Bridge), ready[0]) {
		if time.Now().After(deadline) {
			t.Fatal("damaged spare still ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	now := waitSpares(t, m, netdapi.Bridge, 2)
	if !slices.Contains(now, ready[1]) {
		t.Errorf("intact spare %s dropped: %v", ready[1], now)
	}
	m.teardowns.Wait()
	if _, err := os.Stat(filepath.Join(e.opts.RunDir, "netns", ready[0])); !os.IsNotExist(err) {
		t.Errorf("damaged spare's pin kept: %v", err)
	}
	a := attach(t, m, "j1", netdapi.Bridge, "")
	if _, err := dial(a.NetnsPath, extService, time.Second); err != nil {
		t.Errorf("job after a damaged spare: %v", err)
	}
	detachAll(t, m)
}

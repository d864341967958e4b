package manager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/proto/errdefs"
	"github.com/joblet-dev/joblet/proto/netdapi"
)

const probe = ":7000" // every job serves on its IP and this port

func attach(t *testing.T, m *Manager, id, network, name string) netdapi.Attachment {
	t.Helper()
	a, err := m.Attach(context.Background(), id, network, name)
	if err != nil {
		t.Fatalf("attach %s to %s: %v", id, network, err)
	}
	if a.IP != "" {
		serve(t, a.NetnsPath, a.IP+probe)
	}
	return a
}

// TestReachability checks who reaches whom, with every job's namespace
// made by its Attach, and with every one made ahead (spare.go).
func TestReachability(t *testing.T) {
	t.Run("made-at-attach", func(t *testing.T) { testReachability(t, -1) })
	t.Run("made-ahead", func(t *testing.T) { testReachability(t, 2) })
}

func testReachability(t *testing.T, spares int) {
	e := setup(t)
	e.opts.Spares = spares
	m := e.open(t)
	ctx := context.Background()
	for name, cidr := range map[string]string{"alpha": "10.10.0.0/24", "beta": "10.11.0.0/24"} {
		if _, err := m.CreateNetwork(ctx, name, cidr); err != nil {
			t.Fatal(err)
		}
	}
	var ahead []string
	if spares > 0 {
		for _, n := range []string{"bridge", "isolated", "alpha", "beta"} {
			for _, pin := range waitSpares(t, m, n, spares) {
				ahead = append(ahead, filepath.Join(e.opts.RunDir, "netns", pin))
			}
		}
	}
	jobs := map[string]netdapi.Attachment{}
	for _, j := range []struct{ id, network string }{
		{"br1", "bridge"}, {"br2", ""}, {"a1", "alpha"}, {"a2", "alpha"}, {"b1", "beta"},
		{"iso1", "isolated"}, {"iso2", "isolated"}, {"none1", "none"},
	} {
		a := attach(t, m, j.id, j.network, "")
		if a.NetnsPath != "" && slices.Contains(ahead, a.NetnsPath) != (spares > 0) {
			t.Errorf("job %s got namespace %s; made ahead: %v", j.id, a.NetnsPath, ahead)
		}
		jobs[j.id] = a
	}
	// A service of the host on every address, the bridges' included.
	serve(t, "", "0.0.0.0:7001")

	// A none job's init makes its own namespace (loopback only): netd
	// makes nothing for it.
	if a := jobs["none1"]; a.NetnsPath != "" || a.IP != "" || a.ResolvConf != "" {
		t.Errorf("none job got %+v, want no namespace, address or resolver", a)
	}
	if _, err := os.Stat(filepath.Join(e.opts.RunDir, "netns", "none1")); !os.IsNotExist(err) {
		t.Errorf("none job has a namespace pin: %v", err)
	}
	none := jobs["none1"]
	none.NetnsPath = freshNetns(t) // as the sandbox makes it
	jobs["none1"] = none
	if got := linksIn(t, jobs["br1"].NetnsPath); !slices.Equal(got, []string{"lo", "eth0"}) {
		t.Errorf("bridge job has links %v, want lo and eth0", got)
	}

	type check struct {
		from, to string
		want     bool
	}
	var checks []check
	reach := map[[2]string]bool{{"br1", "br2"}: true, {"br2", "br1"}: true, {"a1", "a2"}: true, {"a2", "a1"}: true}
	for from := range jobs {
		for to, a := range jobs {
			if from != to && a.IP != "" {
				checks = append(checks, check{from, a.IP + probe, reach[[2]string{from, to}]})
			}
		}
		if a := jobs[from]; a.Gateway != "" {
			checks = append(checks,
				check{from, a.Gateway + ":7001", false}, // the host, on the job's own gateway
				check{from, "172.20.0.1:7001", false},   // the host on another bridge
				check{from, uplinkAddr + ":7001", false},
				check{from, extService, true}, // the outside world
			)
		} else {
			checks = append(checks, check{from, extService, false})
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for _, c := range checks {
		wg.Go(func() {
			got, err := dial(jobs[c.from].NetnsPath, c.to, 700*time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			if (err == nil) != c.want {
				failures = append(failures, fmt.Sprintf("%s -> %s: reached=%v (%v), want %v", c.from, c.to, err == nil, err, c.want))
			}
			// The outside world sees the test host's address, never a job's.
			if err == nil && c.to == extService && !strings.HasPrefix(got, uplinkAddr+":") {
				failures = append(failures, fmt.Sprintf("%s -> outside seen as %s, want NAT to %s", c.from, got, uplinkAddr))
			}
		})
	}
	wg.Wait()
	slices.Sort(failures)
	for _, f := range failures {
		t.Error(f)
	}
	t.Logf("%d reachability checks", len(checks))
	detachAll(t, m)
}

func detachAll(t testing.TB, m *Manager) {
	t.Helper()
	m.mu.Lock()
	ids := slices.Collect(mapKeys(m.leases))
	m.mu.Unlock()
	for _, id := range ids {
		if err := m.Detach(context.Background(), id); err != nil {
			t.Errorf("detach %s: %v", id, err)
		}
	}
	m.teardowns.Wait() // the veth pairs go after Detach returns
}

func TestNames(t *testing.T) {
	e := setup(t)
	m := e.open(t)
	ctx := context.Background()
	if _, err := m.CreateNetwork(ctx, "apps", "10.20.0.0/24"); err != nil {
		t.Fatal(err)
	}
	api := attach(t, m, "7", "apps", "api")
	client := attach(t, m, "8", "apps", "")
	other := attach(t, m, "9", "bridge", "")
	iso := attach(t, m, "10", "isolated", "")
	if api.Hostname != "api" || client.Hostname != "job-8" {
		t.Errorf("hostnames %q %q", api.Hostname, client.Hostname)
	}
	if client.ResolvConf != "nameserver 10.20.0.1\n" || !strings.Contains(api.Hosts, api.IP+"\tapi\n") {
		t.Errorf("resolv.conf %q hosts %q", client.ResolvConf, api.Hosts)
	}
	for _, name := range []string{"api", "API.", "job-7"} {
		ip, err := resolve(client.NetnsPath, client.Gateway, name)
		if err != nil || ip != api.IP {
			t.Errorf("client resolves %s to %q, %v; want %s", name, ip, err, api.IP)
		}
	}
	ip, err := resolve(client.NetnsPath, client.Gateway, "api")
	if err == nil {
		if _, err := dial(client.NetnsPath, ip+probe, time.Second); err != nil {
			t.Errorf("client cannot talk to api by name: %v", err)
		}
	}
	// Other names go to the host's resolvers.
	if ip, err := resolve(client.NetnsPath, client.Gateway, "example.test"); err != nil || ip != extAddr {
		t.Errorf("forwarded name: %q %v", ip, err)
	}
	// Names do not leak across networks, nor to isolated jobs.
	for _, j := range []netdapi.Attachment{other, iso} {
		if ip, err := resolve(j.NetnsPath, j.Gateway, "api"); err == nil {
			t.Errorf("job on %s resolves api to %s", j.Network, ip)
		}
		if ip, err := resolve(j.NetnsPath, j.Gateway, "example.test"); err != nil || ip != extAddr {
			t.Errorf("job on %s: forwarded name: %q %v", j.Network, ip, err)
		}
	}
	// A job cannot ask another network's responder.
	if _, err := resolve(other.NetnsPath, client.Gateway, "api"); err == nil {
		t.Error("bridge job reached the responder of network apps")
	}
	if _, err := m.Attach(ctx, "11", "apps", "api"); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("duplicate name: %v", err)
	}
	must(t, m.Detach(ctx, "7"))
	if ip, err := resolve(client.NetnsPath, client.Gateway, "api"); err == nil {
		t.Errorf("detached api still resolves to %s", ip)
	}
	detachAll(t, m)
}

func TestFullNetworkAndCleanup(t *testing.T) {
	e := setup(t)
	m := e.open(t)
	ctx := context.Background()
	before := rules(t)
	if _, err := m.CreateNetwork(ctx, "tiny", "10.30.0.0/29"); err != nil {
		t.Fatal(err)
	}
	var ips []string
	for i := range 5 {
		a := attach(t, m, fmt.Sprint("t", i), "tiny", "")
		ips = append(ips, a.IP)
	}
	if got := strings.Join(ips, " "); got != "10.30.0.2 10.30.0.3 10.30.0.4 10.30.0.5 10.30.0.6" {
		t.Errorf("addresses %s", got)
	}
	_, err := m.Attach(ctx, "t5", "tiny", "")
	if !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "10.30.0.0/29 is full") {
		t.Fatalf("sixth job on a /29: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.opts.RunDir, "netns", "t5")); !os.IsNotExist(err) {
		t.Errorf("refused job left a namespace pin: %v", err)
	}
	if err := m.RemoveNetwork(ctx, "tiny"); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("remove network in use: %v", err)
	}
	attach(t, m, "n0", "none", "")
	attach(t, m, "b0", "bridge", "")
	if got := len(hostLinks(t, "jv")); got != 6 {
		t.Errorf("%d veths for 6 jobs with a network", got)
	}
	detachAll(t, m)
	must(t, m.Detach(ctx, "t0")) // idempotent

	if got := hostLinks(t, "jv"); len(got) != 0 {
		t.Errorf("veths left: %v", got)
	}
	if pins, _ := os.ReadDir(filepath.Join(e.opts.RunDir, "netns")); len(pins) != 0 {
		t.Errorf("namespace pins left: %v", pins)
	}
	st, _ := m.store.Load()
	if len(st.Leases) != 0 {
		t.Errorf("leases left: %+v", st.Leases)
	}
	nets, _ := m.ListNetworks(ctx)
	for _, n := range nets {
		if n.Jobs != 0 {
			t.Errorf("network %s still counts %d jobs", n.Name, n.Jobs)
		}
	}
	// No rule was ever per job: only the networks' blocks are there.
	if got := strings.Count(rules(t), "joblet:tiny"); got != 10 {
		t.Errorf("%d rules for network tiny, want 10", got)
	}
	must(t, m.RemoveNetwork(ctx, "tiny"))
	if after := rules(t); after != before {
		t.Errorf("rules after removing the network:\n%s\nbefore:\n%s", after, before)
	}
	if got := hostLinks(t, "joblet-tiny"); len(got) != 0 {
		t.Errorf("bridge left: %v", got)
	}
}

func TestRefusals(t *testing.T) {
	e := setup(t)
	m := e.open(t)
	ctx := context.Background()
	if _, err := m.CreateNetwork(ctx, "dup", "10.40.0.0/24"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, cidr string
		kind       error
		has        string
	}{
		{"x", "172.20.1.0/24", errdefs.ErrInvalidArgument, `overlaps network "bridge"`},
		{"x", "10.40.0.0/16", errdefs.ErrInvalidArgument, `overlaps network "dup"`},
		{"x", "203.0.113.0/24", errdefs.ErrInvalidArgument, "overlaps a host route on up0"},
		{"x", "10.1.0.5/24", errdefs.ErrInvalidArgument, "did you mean 10.1.0.0/24"},
		{"x", "10.1.0.0/30", errdefs.ErrInvalidArgument, "size must be"},
		{"x", "fd00::/64", errdefs.ErrInvalidArgument, "only IPv4"},
		{"bridge", "10.50.0.0/24", errdefs.ErrInvalidArgument, "reserved"},
		{"host", "10.50.0.0/24", errdefs.ErrInvalidArgument, "reserved"},
		{"no/slash", "10.50.0.0/24", errdefs.ErrInvalidArgument, "lowercase letters"},
		{"dup", "10.50.0.0/24", errdefs.ErrAlreadyExists, "exists already"},
	} {
		_, err := m.CreateNetwork(ctx, tc.name, tc.cidr)
		if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.has) {
			t.Errorf("create %s %s: %v; want %v containing %q", tc.name, tc.cidr, err, tc.kind, tc.has)
		}
	}
	if _, err := m.Attach(ctx, "1", "nosuch", ""); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("attach to a missing network: %v", err)
	}
	if _, err := m.Attach(ctx, "../1", "bridge", ""); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("attach with a bad job id: %v", err)
	}
	if err := m.RemoveNetwork(ctx, "isolated"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("remove a built-in: %v", err)
	}
	if err := m.RemoveNetwork(ctx, "nosuch"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("remove a missing network: %v", err)
	}
	nets, _ := m.ListNetworks(ctx)
	var names []string
	for _, n := range nets {
		names = append(names, fmt.Sprintf("%s %s %s %v", n.Name, n.CIDR, n.Bridge, n.Builtin))
	}
	want := []string{"none   true", "bridge 172.20.0.0/16 joblet0 true", "isolated 172.21.0.0/16 joblet-isolated true", "dup 10.40.0.0/24 joblet-dup false"}
	if !slices.Equal(names, want) {
		t.Errorf("networks %q, want %q", names, want)
	}
}

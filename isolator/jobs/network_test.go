package jobs

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/netdapi"
)

// fakeNetd hands out attachments without touching the kernel and records
// every call.
type fakeNetd struct {
	mu          sync.Mutex
	attachErr   error         // returned by Attach
	attachFails int           // how many Attach calls fail (netd down) before one works
	detachFails int           // how many Detach calls fail (netd down) before one works
	detachDelay time.Duration // how long each Detach takes
	calls       []string      // "attach 1 bridge api", "detach 1"
	attached    map[string]bool
}

func newFakeNetd() *fakeNetd { return &fakeNetd{attached: map[string]bool{}} }

func (n *fakeNetd) Attach(_ context.Context, id, network, name string) (netdapi.Attachment, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, strings.TrimSpace("attach "+id+" "+network+" "+name))
	if n.attachErr != nil {
		return netdapi.Attachment{}, n.attachErr
	}
	if n.attachFails > 0 {
		n.attachFails--
		return netdapi.Attachment{}, errdefs.Errorf(errdefs.ErrUnavailable, "netd is down")
	}
	n.attached[id] = true
	host := name
	if host == "" {
		host = "job-" + id
	}
	return netdapi.Attachment{
		JobID: id, Network: network, NetnsPath: "/run/fake/netns/" + id, IP: "10.9.0." + id,
		Gateway: "10.9.0.1", Hostname: host, ResolvConf: "nameserver 10.9.0.1\n", Hosts: "10.9.0." + id + "\t" + host + "\n",
	}, nil
}

func (n *fakeNetd) Detach(_ context.Context, id string) error {
	n.mu.Lock()
	delay := n.detachDelay
	n.mu.Unlock()
	time.Sleep(delay)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, "detach "+id)
	if n.detachFails > 0 {
		n.detachFails--
		return errdefs.Errorf(errdefs.ErrUnavailable, "netd is down")
	}
	delete(n.attached, id)
	return nil
}

func (n *fakeNetd) CreateNetwork(context.Context, string, string) (netdapi.Network, error) {
	return netdapi.Network{}, errors.New("not in this fake")
}
func (n *fakeNetd) ListNetworks(context.Context) ([]netdapi.Network, error) { return nil, nil }
func (n *fakeNetd) RemoveNetwork(context.Context, string) error             { return nil }

func (n *fakeNetd) callsOf(id string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, c := range n.calls {
		if f := strings.Fields(c); f[1] == id {
			out = append(out, c)
		}
	}
	return out
}

// waitDetached waits until job id is no longer attached.
func (n *fakeNetd) waitDetached(t *testing.T, id string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		n.mu.Lock()
		attached := n.attached[id]
		n.mu.Unlock()
		if !attached {
			return
		}
	}
	t.Fatalf("job %s still attached; calls %v", id, n.callsOf(id))
}

// specRunner records the Spec of every start and runs it with execRunner.
type specRunner struct {
	mu    sync.Mutex
	specs []Spec
}

func (r *specRunner) Start(s Spec) (Proc, error) {
	r.mu.Lock()
	r.specs = append(r.specs, s)
	r.mu.Unlock()
	return execRunner{}.Start(s)
}

func (r *specRunner) last() Spec {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.specs[len(r.specs)-1]
}

func TestNetworkAttachedAndDetached(t *testing.T) {
	netd, runner := newFakeNetd(), &specRunner{}
	f := newFixture(t, func(o *Options) { o.Netd, o.Runner = netd, runner })
	for _, tc := range []struct{ network, name, wantNet, wantHost string }{
		{"", "", "bridge", "job-"},
		{"team-a", "api", "team-a", "api"},
	} {
		j, err := f.reg.Run(context.Background(), &jobletv1.JobSpec{Command: "sh", Args: []string{"-c", "echo $HOSTNAME"}, Network: tc.network, Name: tc.name})
		if err != nil {
			t.Fatal(err)
		}
		id := j.GetId()
		wantHost := tc.wantHost
		if wantHost == "job-" {
			wantHost += id
		}
		if j.GetNetwork() != tc.wantNet || j.GetIpAddress() != "10.9.0."+id || j.GetHostname() != wantHost {
			t.Errorf("%q: record %v", tc.network, j)
		}
		s := runner.last()
		if s.NetnsPath != "/run/fake/netns/"+id || s.ResolvConf != "nameserver 10.9.0.1\n" || !strings.Contains(s.Hosts, wantHost) || s.Hostname != wantHost {
			t.Errorf("%q: runner spec %+v", tc.network, s)
		}
		if !slices.Contains(s.Env, "HOSTNAME="+wantHost) {
			t.Errorf("%q: env %v", tc.network, s.Env)
		}
		f.wait(id)
		if out := f.logd.stdoutOf(id); out != wantHost+"\n" {
			t.Errorf("%q: output %q", tc.network, out)
		}
		netd.waitDetached(t, id)
		want := []string{strings.TrimSpace("attach " + id + " " + tc.wantNet + " " + tc.name), "detach " + id}
		if got := netd.callsOf(id); !slices.Equal(got, want) {
			t.Errorf("%q: netd calls %v, want %v", tc.network, got, want)
		}
		// The record keeps the network and address after the job ended.
		if d := f.stored(id); d.Job.GetNetwork() != tc.wantNet || d.Job.GetIpAddress() != "10.9.0."+id {
			t.Errorf("%q: on disk %v", tc.network, d.Job)
		}
	}
}

func TestNetworkRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		kind    error
		message string
	}{
		{"unknown", errdefs.Errorf(errdefs.ErrNotFound, "no such thing"), errdefs.ErrInvalidArgument, `network "nope" does not exist`},
		{"full", errdefs.Errorf(errdefs.ErrResourceExhausted, "network 10.1.0.0/29 is full"), errdefs.ErrResourceExhausted, "is full"},
		{"name taken", errdefs.Errorf(errdefs.ErrAlreadyExists, `name "api" is taken`), errdefs.ErrAlreadyExists, "is taken"},
		{"netd down", errdefs.Errorf(errdefs.ErrUnavailable, "connection refused"), errdefs.ErrUnavailable, "network service is not available"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			netd := newFakeNetd()
			netd.attachErr = tc.err
			f := newFixture(t, func(o *Options) { o.Netd, o.NetdPatience = netd, 300*time.Millisecond })
			began := time.Now()
			_, err := f.reg.Run(context.Background(), &jobletv1.JobSpec{Command: "true", Network: "nope"})
			took := time.Since(began)
			if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("err %v, want %v with %q", err, tc.kind, tc.message)
			}
			jobs, _ := f.reg.List(context.Background())
			if len(jobs) != 1 || jobs[0].GetState() != jobletv1.JobState_JOB_STATE_FAILED || !strings.Contains(jobs[0].GetReason(), tc.message) {
				t.Fatalf("records %v", jobs)
			}
			if n := jobs[0].GetNetwork(); n != "nope" {
				t.Errorf("record's network %q, want the one asked for, nope", n)
			}
			id := jobs[0].GetId()
			if ev := f.cg.eventsOf(id); len(ev) != 0 {
				t.Errorf("cgroup events %v, want none", ev)
			}
			f.assertNoDirs(id)
			got := netd.callsOf(id)
			attaches := len(got) - 1
			if attaches < 1 || got[attaches] != "detach "+id {
				t.Errorf("netd calls %v, want attach then detach", got)
			}
			// Only an unavailable netd is waited for, and no longer than
			// NetdPatience.
			if down := errors.Is(tc.err, errdefs.ErrUnavailable); down != (attaches > 1) || took > 800*time.Millisecond {
				t.Errorf("%d attaches in %v", attaches, took)
			}
		})
	}
}

// A job started while netd restarts waits for it, and runs.
func TestAttachWaitsForNetd(t *testing.T) {
	netd := newFakeNetd()
	netd.attachFails = 3
	f := newFixture(t, func(o *Options) { o.Netd = netd })
	j, err := f.reg.Run(context.Background(), &jobletv1.JobSpec{Command: "echo", Args: []string{"on the network"}})
	if err != nil {
		t.Fatalf("run while netd restarts: %v", err)
	}
	id := j.GetId()
	if j.GetNetwork() != "bridge" || j.GetIpAddress() != "10.9.0."+id {
		t.Errorf("record %v", j)
	}
	if end := f.wait(id); end.GetState() != completed {
		t.Errorf("record %v", end)
	}
	netd.waitDetached(t, id)
	if got := netd.callsOf(id); len(got) != 5 || got[3] != "attach "+id+" bridge" {
		t.Errorf("netd calls %v, want 4 attaches (3 while netd was down) and a detach", got)
	}
}

// A job that netd attached but that cannot start leaves no attachment,
// cgroup or directory.
func TestNetworkDetachedWhenStartFails(t *testing.T) {
	netd := newFakeNetd()
	f := newFixture(t, func(o *Options) { o.Netd = netd })
	if _, err := f.reg.Run(context.Background(), &jobletv1.JobSpec{Command: "no-such-command-joblet"}); err == nil {
		t.Fatal("started")
	}
	netd.waitDetached(t, "1")
	if ev := f.cg.eventsOf("1"); !slices.Equal(ev, []string{"create", "destroy"}) {
		t.Errorf("cgroup events %v", ev)
	}
	f.assertNoDirs("1")
}

// While netd is down, the detach of an ended job is retried until it works.
// A job's network is released before its end is recorded, even when netd
// takes its time: whoever learns that the job ended (rnx, then `rnx
// network list` or `rnx network remove`) finds the network free.
func TestNetworkReleasedBeforeEndRecorded(t *testing.T) {
	netd := newFakeNetd()
	netd.detachDelay = 200 * time.Millisecond
	f := newFixture(t, func(o *Options) { o.Netd = netd })
	for _, network := range []string{"team-a", "bridge", "none"} {
		j, err := f.reg.Run(context.Background(), &jobletv1.JobSpec{Command: "true", Network: network})
		if err != nil {
			t.Fatal(err)
		}
		id := j.GetId()
		if j := f.wait(id); j.GetState() != completed {
			t.Fatalf("%s: record %v", network, j)
		}
		netd.mu.Lock()
		attached := netd.attached[id]
		netd.mu.Unlock()
		if attached {
			t.Errorf("job %s on %s ended with its network still attached; calls %v", id, network, netd.callsOf(id))
		}
	}
}

func TestDetachRetried(t *testing.T) {
	netd := newFakeNetd()
	netd.detachFails = 3
	f := newFixture(t, func(o *Options) { o.Netd = netd })
	id := f.run("true").GetId()
	if j := f.wait(id); j.GetState() != completed {
		t.Fatalf("record %v", j)
	}
	netd.waitDetached(t, id)
	if got := netd.callsOf(id); len(got) != 5 {
		t.Errorf("netd calls %v, want attach and 4 detaches", got)
	}
}

// A job left running by a crashed isolator is detached when the next one
// opens the registry.
func TestRecoveredJobDetached(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Netd = newFakeNetd() })
	id := f.run("sleep", "1000").GetId()
	// What a crash leaves: the RUNNING record on disk (the next isolator
	// kills the job by its init's identity) and the attachment in netd.
	rec := f.stored(id)
	netd := newFakeNetd()
	netd.attached[id] = true
	f2 := newFixture(t, func(o *Options) { o.Netd = netd })
	if err := f2.reg.store.Save(rec); err != nil {
		t.Fatal(err)
	}
	f2.open()
	netd.waitDetached(t, id)
	if j, _ := f2.reg.Get(context.Background(), id); j.GetReason() != ReasonRestarted || j.GetNetwork() != "bridge" {
		t.Errorf("recovered record %v", j)
	}
}

func TestNoNetdOnlyNone(t *testing.T) {
	f := newFixture(t, nil)
	_, err := f.reg.Run(context.Background(), &jobletv1.JobSpec{Command: "true", Network: "bridge"})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "without netd") {
		t.Fatalf("err %v", err)
	}
	if j := f.wait(f.run("true").GetId()); j.GetNetwork() != "none" || j.GetIpAddress() != "" {
		t.Fatalf("record %v", j)
	}
}

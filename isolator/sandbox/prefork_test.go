package sandbox_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/isolator/sandbox/sandboxtest"
)

// prefork preforks an init with pipes for its output, through spawn (nil:
// none), and returns it with the job that collects the output; the init is
// closed at cleanup if the test did not use it.
func prefork(t *testing.T, spawn func(func() error) error) (*sandbox.Forked, *job) {
	t.Helper()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	f, err := sandbox.Prefork(outW, errW, spawn)
	outW.Close()
	errW.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	j := &job{t: t, outDone: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(&j.stdout, outR); outR.Close() }()
	go func() { defer wg.Done(); _, _ = io.Copy(&j.stderr, errR); errR.Close() }()
	go func() { wg.Wait(); close(j.outDone) }()
	return f, j
}

// A preforked init is born in namespaces of its own and waits at its gate
// having done nothing (no child, no root mounted) for as long as no job
// comes; given one, it is moved into the job's cgroup first, then runs the
// job as PID 1 of its namespace, with the job's hostname and lo only.
func TestPreforkedInitRunsItsJob(t *testing.T) {
	requiresRoot(t)
	f, j := prefork(t, nil)
	pid := f.Pid()
	for _, ns := range []string{"pid", "mnt", "uts", "ipc", "net"} {
		own, err1 := os.Readlink("/proc/self/ns/" + ns)
		its, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		if err1 != nil || err2 != nil || own == its {
			t.Errorf("%s namespace of the preforked init %q (%v), the test's %q (%v): want its own", ns, its, err2, own, err1)
		}
	}
	if !sandboxtest.NsPid1(t, pid) {
		t.Error("the preforked init is not PID 1 of its namespace")
	}
	spec, marker := newSpec(t, "sh", "-c", "hostname; echo ---; tail -n +3 /proc/net/dev")
	time.Sleep(200 * time.Millisecond) // long enough to have begun, had it not waited
	if c := childrenOf(t, pid); c != "" || mountedRoot(pid, spec.RootDir) {
		t.Fatalf("the preforked init started %q or built a root before its job", c)
	}
	cg := &fakeCgroup{t: t, rootDir: spec.RootDir}
	spec.Cgroup = cg
	p, err := f.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	j.proc, j.spec, j.marker = p, spec, marker
	if p.Pid() != pid || !p.Moved() || len(cg.pids) != 1 || cg.pids[0] != pid || !cg.idle {
		t.Errorf("init %d (preforked %d), moved %v, Apply %v, idle during Apply %v: want the preforked init moved in at its gate",
			p.Pid(), pid, p.Moved(), cg.pids, cg.idle)
	}
	if res := j.wait(); res.ExitCode != 0 {
		t.Fatalf("%+v, stderr %q", res, j.stderr.String())
	}
	host, ifaces, _ := strings.Cut(j.stdout.String(), "---\n")
	if host = strings.TrimSpace(host); host != spec.Hostname {
		t.Errorf("hostname %q, want %q", host, spec.Hostname)
	}
	if l := strings.Split(strings.TrimSpace(ifaces), "\n"); len(l) != 1 || !strings.HasPrefix(strings.TrimSpace(l[0]), "lo:") {
		t.Errorf("interfaces inside the job: %q, want only lo", ifaces)
	}
	if err := f.Close(); err != nil {
		t.Errorf("Close after Start: %v", err)
	}
}

// Preforked through a spawn function, the init is let go without Apply
// when the job's cgroup says it holds it (it was born there).
func TestPreforkedInitHeldIsNotMoved(t *testing.T) {
	requiresRoot(t)
	var tid, calls int
	f, j := prefork(t, spawnOn(&tid, &calls))
	if calls != 1 || tid == 0 {
		t.Fatalf("spawn called %d times (thread %d), want once", calls, tid)
	}
	spec, marker := newSpec(t, "echo", "hi")
	cg := &holdingCgroup{fakeCgroup: fakeCgroup{t: t, rootDir: spec.RootDir}, holds: true}
	spec.Cgroup = cg
	p, err := f.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	j.proc, j.spec, j.marker = p, spec, marker
	if p.Moved() || len(cg.pids) != 0 || len(cg.asked) != 1 || cg.asked[0] != f.Pid() {
		t.Errorf("moved %v, Apply %v, Holds asked %v: want Holds asked about %d and no Apply", p.Moved(), cg.pids, cg.asked, f.Pid())
	}
	if res := j.wait(); res.ExitCode != 0 || j.stdout.String() != "hi\n" {
		t.Errorf("got %q %+v", j.stdout.String(), res)
	}
}

// A preforked init closed, or given a job it cannot start (a network
// namespace path that is not one), exits at its gate having run nothing,
// and is reaped; one killed while it waits is seen exited, and reaped by
// Close.
func TestPreforkedInitClosed(t *testing.T) {
	requiresRoot(t)
	before := countChildren(t)
	f, j := prefork(t, nil)
	pid := f.Pid()
	if f.Exited() {
		t.Error("Exited: true for an init waiting at its gate")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(unix.Kill(pid, 0), unix.ESRCH) {
		t.Errorf("the closed init %d is still there", pid)
	}
	<-j.outDone // its copies of the output are gone with it
	spec, _ := newSpec(t, "touch", "/work/ran")
	if _, err := f.Start(spec); err == nil {
		t.Error("Start after Close succeeded")
	}

	f, _ = prefork(t, nil)
	if err := unix.Kill(f.Pid(), unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the killed init to be seen exited", f.Exited)
	if err := f.Close(); err != nil {
		t.Errorf("Close of a killed init: %v", err)
	}

	f, _ = prefork(t, nil)
	spec.NetnsPath = spec.WorkDir
	if _, err := f.Start(spec); err == nil {
		t.Errorf("a preforked init started a job in network namespace %s, a directory", spec.NetnsPath)
	}
	if after := countChildren(t); after != before {
		t.Errorf("children of the test went from %d to %d", before, after)
	}
	if ran(spec.WorkDir) {
		t.Error("the command ran")
	}
}

// A preforked init, cloned with a network namespace of its own, given a
// job on a netd network: it joins netd's namespace at its gate, and the
// command runs there (netd's veth pair, not a fresh lo), with netd's
// resolver files; the test's own threads never leave theirs.
func TestPreforkedInitJoinsNetdNetns(t *testing.T) {
	requiresRoot(t)
	path := preparedNetns(t)
	want, err := os.Readlink(path)
	if err != nil {
		t.Fatal(err)
	}
	before := threadNetns(t)
	f, j := prefork(t, nil)
	spec, marker := newSpec(t, "sh", "-c", "readlink /proc/self/ns/net; ip -o link; cat /etc/resolv.conf")
	spec.NetnsPath = path
	spec.Hosts = "127.0.0.1 localhost\n"
	spec.ResolvConf = "nameserver 10.99.0.1\n"
	p, err := f.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	j.proc, j.spec, j.marker = p, spec, marker
	if res := j.wait(); res.ExitCode != 0 {
		t.Fatalf("%+v, stderr %q", res, j.stderr.String())
	}
	out := j.stdout.String()
	if ns, _, _ := strings.Cut(out, "\n"); ns != want {
		t.Errorf("the command's network namespace %q, want netd's %q", ns, want)
	}
	if !strings.Contains(out, "netd0") || !strings.Contains(out, "nameserver 10.99.0.1") {
		t.Errorf("output %q: want netd's veth and resolver", out)
	}
	if after := threadNetns(t); len(after) != len(before) {
		t.Errorf("the test's threads are in network namespaces %v, were in %v", after, before)
	}
}

// BenchmarkPreforkedStart times a start as a job sees it, to the command
// running (Start's return), with the init cloned then (Start) and with it
// preforked before the timer (Prefork, then (*Forked).Start), alternately
// in the same process so that both see the same load, and reports the
// medians; every job is waited for outside the timer.
func BenchmarkPreforkedStart(b *testing.B) {
	requiresRoot(b)
	var took [2][]time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		preforked := i % 2
		spec, _ := newSpec(b, "/bin/true")
		null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			b.Fatal(err)
		}
		var f *sandbox.Forked
		if preforked == 1 {
			if f, err = sandbox.Prefork(null, null, nil); err != nil {
				b.Fatal(err)
			}
		} else {
			spec.Stdout, spec.Stderr = null, null
		}
		time.Sleep(50 * time.Millisecond) // the prefork's Go start done, off the timer
		b.StartTimer()
		t0 := time.Now()
		var p *sandbox.Process
		if f != nil {
			p, err = f.Start(spec)
		} else {
			p, err = sandbox.Start(spec)
		}
		took[preforked] = append(took[preforked], time.Since(t0))
		b.StopTimer()
		null.Close()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Wait(); err != nil {
			b.Fatal(err)
		}
		<-p.Reaped()
		b.StartTimer()
	}
	for k, unit := range []string{"start-p50-ms", "preforked-p50-ms"} {
		if d := took[k]; len(d) > 0 {
			slices.Sort(d)
			b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, unit)
		}
	}
}

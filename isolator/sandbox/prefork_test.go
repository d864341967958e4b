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

// startForked starts spec, whose marker is marker, through the preforked
// init f, as j's job; a failed Start ends the test.
func (j *job) startForked(f *sandbox.Forked, spec sandbox.Spec, marker string) *sandbox.Process {
	j.t.Helper()
	p, err := f.Start(spec)
	if err != nil {
		j.t.Fatal(err)
	}
	j.proc, j.spec, j.marker = p, spec, marker
	return p
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
	p := j.startForked(f, spec, marker)
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
	p := j.startForked(f, spec, marker)
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
	j.startForked(f, spec, marker)
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

// A preforked init builds, before its gate, the part of the root that
// every job has (rootfs.go), and nothing of any job: its new root is a
// tmpfs stacked on its "/" holding only the system directories, /proc and
// /dev, read-only where they are the host's; nothing is mounted on a
// job's directories, nor on /work, /tmp or /dev/shm; it has no child.
func TestPreforkedInitHoldsNoJob(t *testing.T) {
	requiresRoot(t)
	f, _ := prefork(t, nil)
	pid := f.Pid()
	spec, _ := newSpec(t, "true") // a job's directories, which the init never had
	var root *mountLine
	waitFor(t, "the common root built", func() bool {
		root = stagedRoot(t, pid)
		return root != nil && len(mountsUnder(t, pid, root.id)) > 0 && hasMount(t, pid, "/dev/pts", root.id)
	})
	time.Sleep(100 * time.Millisecond) // whatever else it would do before its gate

	allowed := []string{"/usr", "/bin", "/sbin", "/lib", "/lib64", "/proc", "/dev"}
	for _, m := range mountsUnder(t, pid, root.id) {
		// /work, /tmp and /dev/shm are the job's: not among them.
		if !slices.ContainsFunc(allowed, func(a string) bool { return m.point == a || strings.HasPrefix(m.point, a+"/") }) ||
			m.point == "/dev/shm" {
			t.Errorf("mount on %s (%s) in the root before the gate: not part of every job's", m.point, m.fstype)
		}
		if slices.Contains([]string{"/usr", "/bin", "/sbin", "/lib", "/lib64", "/proc/sys"}, m.point) && !slices.Contains(strings.Split(m.opts, ","), "ro") {
			t.Errorf("%s is mounted %s: want read-only", m.point, m.opts)
		}
	}
	for _, m := range readMountinfo(t, pid) {
		for _, d := range []string{spec.RootDir, spec.WorkDir} {
			if m.point == d || strings.HasPrefix(m.point, d+"/") {
				t.Errorf("mount on %s, a job's directory, before the gate", m.point)
			}
		}
	}
	entries := rootEntries(t, pid, root)
	for _, e := range entries {
		if !slices.Contains(allowed, "/"+e) {
			t.Errorf("/%s in the root before the gate", e)
		}
	}
	if len(entries) == 0 {
		t.Error("the init's new root was not found among its descriptors")
	}
	if c := childrenOf(t, pid); c != "" {
		t.Errorf("the preforked init started %q before its job", c)
	}
}

// Two jobs' roots share nothing writable: each init mounts its own root,
// /dev, devpts, /proc, /tmp, /dev/shm and /work, and what one job writes
// to them the other does not see, while both run.
func TestJobRootsShareNothingWritable(t *testing.T) {
	requiresRoot(t)
	const script = `for d in /dev /dev/shm /tmp /work; do echo x > $d/mark-$0; done
stat -c '%n %d' / /dev /dev/pts /dev/shm /proc /tmp /work
sleep 1; echo ---; ls /dev /dev/shm /tmp /work | grep mark-`
	type ran struct {
		j    *job
		name string
	}
	var jobs []ran
	for _, name := range []string{"a", "b"} {
		f, j := prefork(t, nil)
		spec, marker := newSpec(t, "sh", "-c", script, name)
		spec.Work = sandbox.Storage{MaxBytes: 16 << 20, MaxInodes: 1024} // the isolator's /work: an overlay of its own
		j.startForked(f, spec, marker)
		jobs = append(jobs, ran{j, name})
	}
	devs := map[string]map[string]string{}
	for _, r := range jobs {
		if res := r.j.wait(); res.ExitCode != 0 {
			t.Fatalf("job %s: %+v, stderr %q", r.name, res, r.j.stderr.String())
		}
		stats, marks, _ := strings.Cut(r.j.stdout.String(), "---\n")
		devs[r.name] = map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(stats), "\n") {
			p, d, _ := strings.Cut(l, " ")
			devs[r.name][p] = d
		}
		for _, m := range strings.Fields(marks) {
			if m != "mark-"+r.name {
				t.Errorf("job %s sees %s", r.name, m)
			}
		}
		if n := len(strings.Fields(marks)); n != 4 {
			t.Errorf("job %s sees %d of its 4 marks: %q", r.name, n, marks)
		}
	}
	if len(devs["a"]) != 7 {
		t.Fatalf("stat output of job a: %v", devs["a"])
	}
	for p, d := range devs["a"] {
		if devs["b"][p] == d {
			t.Errorf("%s is device %s in both jobs", p, d)
		}
	}
}

// mountLine is a line of /proc/<pid>/mountinfo.
type mountLine struct {
	id, parent, dev, point, opts, fstype string
}

func readMountinfo(t *testing.T, pid int) []mountLine {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []mountLine
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		pre, post, ok := strings.Cut(l, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 6 || len(g) < 1 {
			t.Fatalf("mountinfo line %q", l)
		}
		out = append(out, mountLine{id: f[0], parent: f[1], dev: f[2], point: f[4], opts: f[5], fstype: g[0]})
	}
	return out
}

// stagedRoot finds the new root an init stacks on its "/": a tmpfs
// mounted on "/" over another mount on "/".
func stagedRoot(t *testing.T, pid int) *mountLine {
	t.Helper()
	ms := readMountinfo(t, pid)
	for i, m := range ms {
		if m.point != "/" || m.fstype != "tmpfs" {
			continue
		}
		for _, p := range ms {
			if p.id == m.parent && p.point == "/" {
				return &ms[i]
			}
		}
	}
	return nil
}

// mountsUnder lists the mounts below the mount id, at any depth.
func mountsUnder(t *testing.T, pid int, id string) []mountLine {
	t.Helper()
	ms := readMountinfo(t, pid)
	in := map[string]bool{id: true}
	var out []mountLine
	for changed := true; changed; {
		changed = false
		for _, m := range ms {
			if in[m.parent] && !in[m.id] {
				in[m.id], changed = true, true
				out = append(out, m)
			}
		}
	}
	return out
}

func hasMount(t *testing.T, pid int, point, under string) bool {
	return slices.ContainsFunc(mountsUnder(t, pid, under), func(m mountLine) bool { return m.point == point })
}

// rootEntries lists the new root through the init's descriptor of it.
func rootEntries(t *testing.T, pid int, root *mountLine) []string {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		p := fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())
		var st unix.Stat_t
		if unix.Stat(p, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		if fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)) != root.dev {
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	return nil
}

// The gate's byte and the spec go in one message; a spec larger than the
// spec socket's buffer still arrives whole.
func TestLargeSpec(t *testing.T) {
	requiresRoot(t)
	f, j := prefork(t, nil)
	spec, marker := newSpec(t, "sh", "-c", `echo ${#BIG1} ${#BIG2} ${#BIG3}`)
	for i := 1; i <= 3; i++ {
		spec.Env = append(spec.Env, fmt.Sprintf("BIG%d=%s", i, strings.Repeat("x", 120<<10)))
	}
	j.startForked(f, spec, marker)
	if res := j.wait(); res.ExitCode != 0 {
		t.Fatalf("%+v, stderr %q", res, j.stderr.String())
	}
	if want := "122880 122880 122880\n"; j.stdout.String() != want {
		t.Errorf("output %q, want %q", j.stdout.String(), want)
	}
}

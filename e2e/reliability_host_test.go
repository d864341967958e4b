package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// restoreWithin is how soon netd must have put flushed rules back ("within
// a few seconds", issue 10).
const restoreWithin = 10 * time.Second

// TestReliabilityIptablesFlush flushes the filter and nat tables of the
// suite's (private) network namespace while jobs run, as another tool on
// the host might, and expects netd to put every rule back within
// restoreWithin and the jobs to reach each other again.
func TestReliabilityIptablesFlush(t *testing.T) {
	s := ownSuite(t, suiteOptions{})
	srv := s.detach(t, "--network=bridge", "python3", "-c", server)
	t.Cleanup(func() { s.rnx(t, "stop", srv) })
	ip := s.field(t, srv, "IP Address")
	s.waitProbe(t, "bridge", ip, 15*time.Second)
	before := s.rules(t)
	if len(before) == 0 {
		t.Fatal("no JOBLET rule in the suite's namespace before the flush")
	}

	s.inNetns(t, "iptables", "-F")
	s.inNetns(t, "iptables", "-t", "nat", "-F")
	flushed := time.Now()
	if got := s.rules(t); len(got) >= len(before) {
		t.Fatalf("the flush removed nothing: %d rules before, %d after", len(before), len(got))
	}
	var missing []string
	for time.Since(flushed) < restoreWithin {
		missing = missingRules(before, s.rules(t))
		if len(missing) == 0 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d rules still missing %v after the flush (netd did not restore them):\n%s",
			len(missing), len(before), restoreWithin, strings.Join(missing, "\n"))
	}
	t.Logf("all %d rules back %v after the flush", len(before), time.Since(flushed).Round(time.Millisecond))
	if !s.probe(t, "bridge", ip) {
		t.Errorf("rules restored, but a bridge job no longer reaches the server job at %s", ip)
	}
	if st := s.field(t, srv, "Status"); st != "RUNNING" {
		t.Errorf("the server job is %s after the flush, want RUNNING", st)
	}
}

// rules lists the JOBLET rules (filter and nat, iptables -S form) in the
// suite's namespace, sorted, with the table as a prefix.
func (s *suite) rules(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, table := range []string{"filter", "nat"} {
		for _, l := range strings.Split(s.inNetns(t, "iptables", "-t", table, "-S"), "\n") {
			if strings.HasPrefix(l, "-A ") && strings.Contains(l, "JOBLET") {
				out = append(out, table+" "+l)
			}
		}
	}
	sort.Strings(out)
	return out
}

func missingRules(want, got []string) []string {
	have := map[string]bool{}
	for _, g := range got {
		have[g] = true
	}
	var missing []string
	for _, w := range want {
		if !have[w] {
			missing = append(missing, w)
		}
	}
	return missing
}

// probe says whether a fresh job on network reaches host:8080.
func (s *suite) probe(t *testing.T, network, host string) bool {
	t.Helper()
	r := s.rnx(t, "run", "--network="+network, "python3", "-c", client, host, servicePort)
	return r.code == 0 && strings.TrimSpace(r.stdout) == "pong"
}

// waitProbe waits until a job on network reaches host:8080.
func (s *suite) waitProbe(t *testing.T, network, host string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); !s.probe(t, network, host); {
		if time.Now().After(deadline) {
			t.Fatalf("nothing answers at %s:%s on %s", host, servicePort, network)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestReliabilityReboot simulates a machine reboot: SIGKILL the supervisor
// and every process of the suite (services, shims, jobs) at once, drop
// what a reboot drops (the network namespace with its bridges, veths and
// rules, the run dir, mounts, the jobs' cgroups), then start a fresh suite
// on the same dev dir in a fresh namespace. Networks, schedules and records
// must be back, and the job that was running must be FAILED with a reason.
func TestReliabilityReboot(t *testing.T) {
	if theSuite == nil {
		t.Skip(skipReason)
	}
	devDir, err := os.MkdirTemp("/tmp", "joblet-e2e-reboot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(devDir) })
	first := ownSuite(t, suiteOptions{devDir: devDir})

	const netName, netCIDR = "bootnet", "10.78.0.0/24"
	if r := first.rnx(t, "network", "create", netName, "--cidr="+netCIDR); r.code != 0 {
		t.Fatalf("network create: %v", r)
	}
	dr := first.rnx(t, "run", "--network="+netName, "sh", "-c", "echo before the reboot; exit 3")
	if dr.code != 3 {
		t.Fatalf("a job that exits 3: %v", dr)
	}
	done := headerID(t, dr.stderr)
	running := first.detach(t, "--network="+netName, "sleep", "1000")
	first.waitStatus(t, running, "RUNNING", 10*time.Second)
	sr := first.rnx(t, "run", "--schedule=25s", "echo", "scheduled before the reboot")
	if sr.code != 0 {
		t.Fatalf("schedule: %v", sr)
	}
	scheduled := headerID(t, sr.stdout)
	before := first.list(t)
	doneLog := first.rnx(t, "log", done)

	killed := first.crash(t)
	t.Logf("\"reboot\": SIGKILLed %d processes", killed)

	start := time.Now()
	second, err := launchSuite(theSuite.binDir, suiteOptions{devDir: devDir, netns: newNetns(t)})
	if err != nil {
		t.Fatalf("start again after the \"reboot\": %v", err)
	}
	t.Cleanup(func() { second.stop(t) })
	t.Logf("ready again %v after the start", time.Since(start).Round(time.Millisecond))

	after := second.list(t)
	for id, rec := range before {
		if _, ok := after[id]; !ok {
			t.Errorf("job %s lost in the reboot: %s", id, jsonString(rec))
		}
	}
	if st := jsonString(after[done]); st != jsonString(before[done]) {
		t.Errorf("the ended job's record changed in the reboot:\nbefore %s\nafter  %s", jsonString(before[done]), st)
	}
	if l := second.rnx(t, "log", done); l.stdout != doneLog.stdout || l.stdout != "before the reboot\n" {
		t.Errorf("the ended job's log after the reboot: %v", l)
	}
	if st := second.field(t, running, "Status"); st != "FAILED" {
		t.Errorf("the job running at the reboot is %s, want FAILED", st)
	}
	// The isolator's jobs.ReasonShimLost: the job's shim left no result.
	if reason := second.field(t, running, "Reason"); !strings.Contains(reason, "the host or the isolator's shim stopped") {
		t.Errorf("the job running at the reboot does not say it was lost with the host: %s", second.rnx(t, "status", running).stdout)
	} else {
		t.Logf("the job running at the reboot: FAILED, reason %q", reason)
	}
	if nl := second.rnx(t, "network", "list"); !strings.Contains(nl.stdout, netName) || !strings.Contains(nl.stdout, netCIDR) {
		t.Errorf("network %s not back after the reboot: %v", netName, nl)
	}
	srv := second.detach(t, "--network="+netName, "python3", "-c", server)
	t.Cleanup(func() { second.rnx(t, "stop", srv) })
	second.waitProbe(t, netName, second.field(t, srv, "IP Address"), 15*time.Second)
	if st := second.field(t, scheduled, "Status"); st != "SCHEDULED" {
		t.Errorf("the scheduled job is %s after the reboot, want SCHEDULED", st)
	}
	if second.waitStatus(t, scheduled, "COMPLETED", 40*time.Second) {
		if l := second.rnx(t, "log", scheduled); l.stdout != "scheduled before the reboot\n" {
			t.Errorf("the scheduled job's log after the reboot: %v", l)
		}
	}
}

// crash SIGKILLs the supervisor, then every process of the suite (its
// services, the jobs' shims, which run from a sealed copy of the
// isolator's binary under a name of their own, and every process in its
// jobs' cgroups) until none is left, and then drops what a reboot would:
// the mounts under the dev dir (netd's namespace pins), the run dir, and
// the suite's (now empty) cgroups. It returns how many processes it killed.
func (s *suite) crash(t *testing.T) int {
	t.Helper()
	pids, err := s.pids()
	if err != nil {
		t.Fatal(err)
	}
	bases, err := cgroupDirs(pids["isolator"])
	if err != nil {
		t.Fatal(err)
	}
	own := s.cgroupParent()
	supervisor := s.cmd.Process.Pid
	// All at once, as a power cut would: every process of the suite is
	// frozen first (SIGSTOP), so none sees another die (the supervisor's
	// children get SIGTERM when it dies; a shim records its job's end), then
	// all are SIGKILLed. The supervisor is frozen first and its tree is
	// walked until a pass finds nothing new: a frozen parent keeps its
	// children's ppid, so a shim is found under the isolator that started
	// it.
	victims := func() map[int]string {
		m := s.strayProcesses()
		for _, pid := range descendants(supervisor) {
			if _, ok := m[pid]; !ok {
				m[pid] = "descendant"
			}
		}
		for _, pid := range pidsInCgroup(own) {
			m[pid] = "job"
		}
		return m
	}
	all := map[int]uint64{} // pid → start time, so a reused pid is never taken for it
	freeze := func(pid int) bool {
		if _, seen := all[pid]; seen {
			return false
		}
		start, ok := startTime(pid)
		if !ok {
			return false
		}
		all[pid] = start
		_ = syscall.Kill(pid, syscall.SIGSTOP)
		return true
	}
	freeze(supervisor)
	for fresh := true; fresh; {
		fresh = false
		for pid := range victims() {
			if freeze(pid) {
				fresh = true
			}
		}
	}
	killed := 0
	for pid := range all {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed++
		}
	}
	<-s.exited
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		v := victims()
		for pid, start := range all {
			if st, ok := startTime(pid); ok && st == start && processAlive(pid) {
				v[pid] = "frozen"
			}
		}
		if len(v) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes of the suite survive SIGKILL: %v", v)
		}
		for pid := range v {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	mounts, err := mountsUnder(s.devDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		if f := strings.Fields(m); len(f) > 4 {
			if out, err := exec.Command("umount", "-l", f[4]).CombinedOutput(); err != nil {
				t.Logf("umount %s: %v %s", f[4], err, out)
			}
		}
	}
	if err := os.RemoveAll(filepath.Join(s.devDir, "run")); err != nil {
		t.Fatal(err)
	}
	for _, b := range bases {
		removeEmptyTree(filepath.Join(b, own))
	}
	return killed
}

// descendants lists the processes under root: its children, theirs, and
// so on.
func descendants(root int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(pid); len(f) > 1 {
			if ppid, err := strconv.Atoi(f[1]); err == nil {
				children[ppid] = append(children[ppid], pid)
			}
		}
	}
	var out []int
	for queue := []int{root}; len(queue) > 0; queue = queue[1:] {
		for _, c := range children[queue[0]] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// startTime is when pid started (field 22 of /proc/PID/stat, in clock
// ticks since boot); false when there is no such process.
func startTime(pid int) (uint64, bool) {
	f := statFields(pid)
	const field = 22 - 3 // statFields starts at field 3
	if len(f) <= field {
		return 0, false
	}
	n, err := strconv.ParseUint(f[field], 10, 64)
	return n, err == nil
}

// statFields are the fields of /proc/PID/stat after the command name
// (which may hold spaces), starting with the state (field 3); nil when
// the process is gone.
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// pidsInCgroup lists the live processes whose cgroup path (in any
// hierarchy) has a component named name.
func pidsInCgroup(name string) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !processAlive(pid) {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err == nil && (strings.Contains(string(b), "/"+name+"/") || strings.Contains(string(b), "/"+name+"\n")) {
			out = append(out, pid)
		}
	}
	return out
}

// removeEmptyTree removes the cgroup directories under and including dir,
// deepest first (a cgroup can only be removed once it has no children).
func removeEmptyTree(dir string) {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = syscall.Rmdir(dirs[i])
	}
}

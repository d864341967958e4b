package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The security probes of SECURITY.md's "The sandbox" and "Resources", run
// through the whole suite: each attack is made from inside a job and must
// fail, and the host must be unchanged afterwards.

// probePath builds the static probe (isolator/sandbox/internal/probe) into
// a directory the test removes; jobs get it by upload. The build is cached.
func probePath(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "probe")
	cmd := exec.Command("go", "build", "-C", "../isolator", "-o", path, "./sandbox/internal/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the probe: %v: %s", err, out)
	}
	return path
}

// sha256Files hashes every file of dir.
func sha256Files(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for _, e := range entries {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		sums[e.Name()] = hex.EncodeToString(h.Sum(nil))
	}
	return sums
}

// readMountinfo returns the host's mounts under the suite's directory and
// the system directories a job sees: other suites may mount elsewhere on a
// shared machine meanwhile.
func readMountinfo(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := f[4]
		// netd's per-job network namespace pins come and go with jobs
		// (detached asynchronously after a job ends); they are not mounts
		// a job made.
		if strings.Contains(line, " - nsfs ") {
			continue
		}
		if strings.HasPrefix(mp, theSuite.devDir) || mp == "/" || mp == "/usr" || mp == "/proc" || mp == "/dev" || mp == "/sys" {
			ours = append(ours, line)
		}
	}
	return strings.Join(ours, "\n")
}

func TestSecurityProbe(t *testing.T) {
	s := needSuite(t)
	probe := probePath(t)
	binsBefore := sha256Files(t, s.binDir)
	mountsBefore := readMountinfo(t)

	_, r := mustRun(t, "--upload="+probe, "/work/probe")
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if name, res, ok := strings.Cut(line, " "); ok {
			got[name] = res
		}
	}
	if got["getpid"] != "ok" {
		t.Fatalf("the probe did not run: %v", r)
	}
	for _, name := range []string{
		"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
		"mount", "umount2", "pivot_root", "fsopen", "open_tree", "swapon", "swapoff", "reboot",
		"keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
		"io_uring_setup", "ptrace", "process_vm_readv", "kcmp", "open_by_handle_at",
		"name_to_handle_at", "setns", "iopl", "ioperm", "acct", "settimeofday",
		"clock_settime", "clock_adjtime", "adjtimex", "syslog", "quotactl", "x32_getpid",
	} {
		if got[name] != "EPERM" {
			t.Errorf("%s in a job: %q, want EPERM", name, got[name])
		}
	}
	if got["clone3"] != "ENOSYS" {
		t.Errorf("clone3 in a job: %q, want ENOSYS", got["clone3"])
	}
	for _, name := range []string{"open_init_exe_write", "open_init_mem"} {
		if got[name] == "ok" || got[name] == "" {
			t.Errorf("%s in a job: %q, want a refusal", name, got[name])
		}
	}
	// A shell's attempts on the daemon's executable through the init.
	rnx(t, "run", "sh", "-c", "echo x > /proc/1/exe; cat /dev/zero > /proc/1/exe; mount -t tmpfs x /tmp")
	if after := sha256Files(t, s.binDir); !equalMaps(binsBefore, after) {
		t.Errorf("the daemon's binaries changed after the probes:\nbefore %v\nafter  %v", binsBefore, after)
	}
	if after := readMountinfo(t); after != mountsBefore {
		t.Errorf("the host's mount table changed after the probes:\nbefore:\n%s\nafter:\n%s", mountsBefore, after)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestSecurityCapabilities(t *testing.T) {
	needSuite(t)
	_, r := mustRun(t, "grep", "-E", "^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):", "/proc/self/status")
	const allow = "00000000a00405fb" // Docker's default set without NET_RAW and MKNOD
	want := "CapInh:\t" + allow + "\nCapPrm:\t" + allow + "\nCapEff:\t" + allow + "\nCapBnd:\t" + allow +
		"\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n"
	if r.stdout != want {
		t.Errorf("capabilities in a job:\n%s\nwant:\n%s", r.stdout, want)
	}
	for _, cmd := range []string{
		"mount -t tmpfs x /tmp",
		"mknod /tmp/sda b 8 0",
		"unshare -U true",
		"unshare -n true",
		"ip link add joblet-probe type dummy",
	} {
		if r := rnx(t, "run", "sh", "-c", cmd); r.code == 0 {
			t.Errorf("%q succeeded in a job", cmd)
		}
	}
	// Ordinary programs still work.
	if _, r := mustRun(t, "sh", "-c", "python3 -c 'print(6*7)' && ls / >/dev/null && touch /tmp/f && chown 65534 /tmp/f && echo ok"); r.stdout != "42\nok\n" {
		t.Errorf("ordinary programs in a job: %v", r)
	}
}

func TestSecurityProcAndFiles(t *testing.T) {
	needSuite(t)
	for _, cmd := range []string{
		"echo 1 > /proc/sys/kernel/sysrq",
		"echo 1 > /proc/sys/vm/drop_caches",
		"echo h > /proc/sysrq-trigger",
		"test -e /sys/kernel",
		"grep -q cgroup /proc/self/mountinfo",
		"test -s /proc/kcore",
		"test -s /proc/keys",
		"cat /dev/tty",
	} {
		if r := rnx(t, "run", "sh", "-c", cmd); r.code == 0 {
			t.Errorf("%q succeeded in a job", cmd)
		}
	}
	if _, r := mustRun(t, "ls", "/proc/self/fd"); strings.Join(strings.Fields(r.stdout), " ") != "0 1 2 3" {
		t.Errorf("descriptors in a job: %q, want 0 1 2 and ls's own 3", r.stdout)
	}
	if _, r := mustRun(t, "sh", "-c", "pwd; readlink /proc/self/cwd; readlink /proc/self/root"); r.stdout != "/work\n/work\n/\n" {
		t.Errorf("cwd and root in a job: %q", r.stdout)
	}
}

func TestSecurityKillAllHurtsNobodyElse(t *testing.T) {
	needSuite(t)
	victim := detach(t, "sleep", "60")
	t.Cleanup(func() { rnx(t, "stop", victim) })
	rnx(t, "run", "sh", "-c", "kill -9 -1; sleep 1")
	if got := jobStatus(t, victim); got != "RUNNING" {
		t.Errorf("another job after kill -9 -1 in a job: %s, want RUNNING", got)
	}
	if r := rnx(t, "list"); r.code != 0 {
		t.Errorf("the suite after kill -9 -1 in a job: %v", r)
	}
}

func TestSecurityStorageCaps(t *testing.T) {
	needSuite(t)
	mountsBefore := readMountinfo(t)
	// /tmp: 256 MiB by default; /work: 65536 inodes by default.
	id, r := mustRun(t, "sh", "-c", `dd if=/dev/zero of=/tmp/f bs=1M count=300 2>&1 | grep -o 'No space left on device'; rm /tmp/f
		python3 -c '
import errno, os
n = 0
try:
    while n < 100000:
        open("/work/f%d" % n, "w").close()
        n += 1
except OSError as e:
    print(errno.errorcode[e.errno], n > 60000)
'`)
	if r.stdout != "No space left on device\nENOSPC True\n" {
		t.Errorf("filling /tmp and /work: %v, want ENOSPC for both", r)
	}
	if after := readMountinfo(t); after != mountsBefore {
		t.Errorf("the host's mount table changed:\nbefore:\n%s\nafter:\n%s", mountsBefore, after)
	}
	// Removed once the job's end is recorded, just after its output ends.
	deadline := time.Now().Add(5 * time.Second)
	for _, err := os.Stat(filepath.Join(isolatorState("work"), id)); err == nil; _, err = os.Stat(filepath.Join(isolatorState("work"), id)) {
		if time.Now().After(deadline) {
			t.Errorf("the workspace of job %s is left after it ended", id)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package sandbox_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/joblet-dev/joblet/isolator/sandbox"
)

// The security probes: what a hostile command tries from inside a job.

// probeBinary builds the static probe (internal/probe) into a directory
// the test removes. The build is cached.
func probeBinary(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "probe")
	cmd := exec.Command("go", "build", "-o", path, "./internal/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the probe: %v: %s", err, out)
	}
	return path
}

// runProbe runs the probe in a job with the user namespace u (none if nil)
// and returns its lines as name → result.
func runProbe(t *testing.T, u *sandbox.UserNS) map[string]string {
	t.Helper()
	bin, err := os.ReadFile(probeBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	spec, marker := newSpec(t, "/work/probe")
	spec.UserNS = u
	if err := os.WriteFile(filepath.Join(spec.WorkDir, "probe"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	j, err := start(t, spec, marker)
	if err != nil {
		t.Fatal(err)
	}
	if res := j.wait(); res.ExitCode != 0 {
		t.Fatalf("probe: %+v, stderr %q", res, j.stderr.String())
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(j.stdout.String()), "\n") {
		if name, res, ok := strings.Cut(line, " "); ok {
			got[name] = res
		}
	}
	return got
}

func TestCapabilitiesAndNoNewPrivs(t *testing.T) {
	requiresRoot(t)
	for _, u := range []*sandbox.UserNS{nil, &testUserNS} {
		t.Run(fmt.Sprintf("userns=%v", u != nil), func(t *testing.T) { capabilitiesAndNoNewPrivs(t, u) })
	}
}

// capabilitiesAndNoNewPrivs checks the command's capabilities, as its own
// user namespace sees them, and what they do not allow.
func capabilitiesAndNoNewPrivs(t *testing.T, u *sandbox.UserNS) {
	out, res := runAs(t, u, "grep", "-E", "^(Cap|NoNewPrivs|Seccomp)", "/proc/self/status")
	if res.ExitCode != 0 {
		t.Fatalf("grep: %+v", res)
	}
	want := map[string]string{
		"CapInh": "00000000a00405fb", "CapPrm": "00000000a00405fb", "CapEff": "00000000a00405fb",
		"CapBnd": "00000000a00405fb", "CapAmb": "0000000000000000",
		"NoNewPrivs": "1", "Seccomp": "2", "Seccomp_filters": "1",
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			got[strings.TrimSuffix(f[0], ":")] = f[1]
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q (status lines %q)", k, got[k], v, out)
		}
	}
	// What the dropped capabilities would allow.
	for _, cmd := range []string{
		"mount -t tmpfs x /tmp",
		"mknod /tmp/sda b 8 0",
		"unshare -U true",
		"unshare -m true",
		"ip link add joblet-probe type dummy",
		"ping -c 1 -W 1 127.0.0.1",
		"echo 1 > /proc/sys/kernel/sysrq",
		"echo b > /proc/sysrq-trigger",
		"chroot / true && test -w /proc/sys/kernel/hostname",
	} {
		if _, res := runAs(t, u, "sh", "-c", cmd); res.ExitCode == 0 {
			t.Errorf("%q succeeded inside a job", cmd)
		}
	}
	// What a job's root still may do.
	for _, cmd := range []string{
		"touch /tmp/f && chown 65534:65534 /tmp/f && chmod 600 /tmp/f && cat /tmp/f",
		"python3 -c 'import os; print(os.getuid())'",
		"ls / >/dev/null && sh -c 'exit 0'",
		"setpriv --reuid=65534 --regid=65534 --clear-groups id -u | grep -qx 65534",
	} {
		if _, res := runAs(t, u, "sh", "-c", cmd); res.ExitCode != 0 {
			t.Errorf("%q failed inside a job: %+v", cmd, res)
		}
	}
}

func TestSeccompProbe(t *testing.T) {
	requiresRoot(t)
	for _, u := range []*sandbox.UserNS{nil, &testUserNS} {
		t.Run(fmt.Sprintf("userns=%v", u != nil), func(t *testing.T) { seccompProbe(t, u) })
	}
}

func seccompProbe(t *testing.T, u *sandbox.UserNS) {
	got := runProbe(t, u)
	for _, name := range []string{
		"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
		"mount", "umount2", "pivot_root", "fsopen", "open_tree", "swapon", "swapoff", "reboot",
		"keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
		"io_uring_setup", "ptrace", "process_vm_readv", "kcmp", "open_by_handle_at",
		"name_to_handle_at", "setns", "iopl", "ioperm", "acct", "settimeofday",
		"clock_settime", "clock_adjtime", "adjtimex", "syslog", "quotactl", "x32_getpid",
	} {
		if got[name] != "EPERM" {
			t.Errorf("%s inside a job: %q, want EPERM", name, got[name])
		}
	}
	if got["clone3"] != "ENOSYS" {
		t.Errorf("clone3 inside a job: %q, want ENOSYS (so that libc falls back to clone)", got["clone3"])
	}
	if got["getpid"] != "ok" {
		t.Errorf("getpid inside a job: %q, want ok (the probe itself is broken)", got["getpid"])
	}
	// The init is not dumpable: its executable and memory are out of reach.
	for _, name := range []string{"open_init_exe_write", "open_init_mem"} {
		if got[name] == "ok" || got[name] == "" {
			t.Errorf("%s inside a job: %q, want a refusal", name, got[name])
		}
	}
}

func TestStorageCaps(t *testing.T) {
	requiresRoot(t)
	before, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	spec, marker := newSpec(t, "sh", "-c", `
		cat /work/uploaded
		dd if=/dev/zero of=/work/big bs=64k count=32 2>&1 | grep -o 'No space left on device' | head -1
		rm -f /work/big
		i=0; while [ $i -lt 100 ] && touch /work/f$i 2>/dev/null; do i=$((i+1)); done; echo work files $i
		dd if=/dev/zero of=/tmp/big bs=64k count=64 2>&1 | grep -o 'No space left on device' | head -1
		rm -f /tmp/big
		i=0; while [ $i -lt 100 ] && touch /tmp/f$i 2>/dev/null; do i=$((i+1)); done; echo tmp files $i
		rm -f /work/f* /tmp/f*
		echo changed > /work/uploaded; cat /work/uploaded
		grep -c -e ' /work ' -e ' /tmp ' /proc/self/mountinfo
		test -e /.work-layers -o -e /upper && echo layers visible; true`)
	spec.Work = sandbox.Storage{MaxBytes: 1 << 20, MaxInodes: 32}
	spec.Tmp = sandbox.Storage{MaxBytes: 2 << 20, MaxInodes: 48}
	if err := os.WriteFile(filepath.Join(spec.WorkDir, "uploaded"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	j, err := start(t, spec, marker)
	if err != nil {
		t.Fatal(err)
	}
	if res := j.wait(); res.ExitCode != 0 {
		t.Fatalf("%+v, stderr %q", res, j.stderr.String())
	}
	want := "from the host\nNo space left on device\nwork files "
	out := j.stdout.String()
	if !strings.HasPrefix(out, want) {
		t.Fatalf("output %q, want it to start with %q", out, want)
	}
	var workFiles, tmpFiles int
	rest := strings.SplitN(strings.TrimPrefix(out, want), "\n", 2)
	if _, err := fmt.Sscan(rest[0], &workFiles); err != nil || workFiles < 10 || workFiles >= 32 {
		t.Errorf("files created in /work under a 32-inode cap: %q", rest[0])
	}
	if !strings.HasPrefix(rest[1], "No space left on device\ntmp files ") {
		t.Fatalf("writing 4 MiB to a 2 MiB /tmp: %q", rest[1])
	}
	rest = strings.SplitN(strings.TrimPrefix(rest[1], "No space left on device\ntmp files "), "\n", 2)
	if _, err := fmt.Sscan(rest[0], &tmpFiles); err != nil || tmpFiles < 10 || tmpFiles >= 48 {
		t.Errorf("files created in /tmp under a 48-inode cap: %q", rest[0])
	}
	if rest[1] != "changed\n2\n" {
		t.Errorf("after the caps: %q, want the changed upload and one mount each at /work and /tmp", rest[1])
	}
	// The job's writes stayed in its own layer: the host's workspace holds
	// the upload, unchanged, and nothing else.
	if b, err := os.ReadFile(filepath.Join(spec.WorkDir, "uploaded")); err != nil || string(b) != "from the host\n" {
		t.Errorf("upload on the host after the job: %q %v", b, err)
	}
	if entries, _ := os.ReadDir(spec.WorkDir); len(entries) != 1 {
		t.Errorf("host workspace after the job holds %d entries, want only the upload", len(entries))
	}
	after, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Errorf("host mount table changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

package sandbox_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/isolator/sandbox"
)

// testUserNS is the production default range (proto/config).
var testUserNS = sandbox.UserNS{HostUID: 1879048192, HostGID: 1879048192, Size: 65536}

// owner returns the host uid and gid of path.
func owner(t *testing.T, path string) (uint32, uint32) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

func TestUserNSIdentity(t *testing.T) {
	requiresRoot(t)
	out, res := runAs(t, &testUserNS, "sh", "-c", "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups")
	if res.ExitCode != 0 {
		t.Fatalf("%+v", res)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{"0", "0", "0 1879048192 65536", "0 1879048192 65536", "allow"}
	if len(lines) != len(want) {
		t.Fatalf("got %q, want %q", lines, want)
	}
	for i := range want {
		if got := strings.Join(strings.Fields(lines[i]), " "); got != want[i] {
			t.Errorf("line %d: got %q, want %q", i, got, want[i])
		}
	}
}

// TestUserNSWorkspace: with /work a bind of the host directory, what the
// job creates or gives away there belongs to mapped host ids, and what
// the isolator put there before (uploads, root-owned 0600) is the job's.
func TestUserNSWorkspace(t *testing.T) {
	requiresRoot(t)
	spec, marker := newSpec(t, "sh", "-c", `set -e
		cat /work/up/secret; echo more >> /work/up/secret
		echo new > /work/new
		touch /work/given && chown 1000:2000 /work/given
		! chown 65536 /work/given 2>/dev/null
		mkdir -p /work/.local/lib && touch /work/.local/lib/pkg`)
	spec.UserNS = &testUserNS
	up := filepath.Join(spec.WorkDir, "up")
	if err := os.Mkdir(up, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(up, "secret"), []byte("s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := start(t, spec, marker)
	if err != nil {
		t.Fatal(err)
	}
	if res := j.wait(); res.ExitCode != 0 {
		t.Fatalf("%+v, stderr %q", res, j.stderr.String())
	}
	h := testUserNS.HostUID
	for path, want := range map[string][2]uint32{
		"":               {h, h},
		"up/secret":      {h, h},
		"new":            {h, h},
		"given":          {h + 1000, h + 2000},
		".local/lib/pkg": {h, h},
		".local/lib":     {h, h},
		"up":             {h, h},
		".local":         {h, h},
	} {
		if u, g := owner(t, filepath.Join(spec.WorkDir, path)); u != want[0] || g != want[1] {
			t.Errorf("/work/%s is %d:%d on the host, want %d:%d", path, u, g, want[0], want[1])
		}
	}
	if b, _ := os.ReadFile(filepath.Join(up, "secret")); string(b) != "s\nmore\n" {
		t.Errorf("uploaded file after the job: %q", b)
	}
}

// TestUserNSCappedWork: with /work an overlay (the default), the job owns
// it and the files it writes, which the host sees as the mapped uid.
func TestUserNSCappedWork(t *testing.T) {
	requiresRoot(t)
	spec, marker := newSpec(t, "sh", "-c", `set -e
		echo more >> /work/up; echo x > /work/f; mkdir /work/d; chown 7:8 /work/d
		stat -c '%u:%g %a' /work /work/up /tmp /dev/shm
		touch /work/ready; sleep 30`)
	spec.UserNS = &testUserNS
	spec.Work = sandbox.Storage{MaxBytes: 8 << 20, MaxInodes: 1024}
	if err := os.WriteFile(filepath.Join(spec.WorkDir, "up"), []byte("u\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := start(t, spec, marker)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.proc.Kill(); j.proc.Wait() })
	// The job's /work, seen from the host through its init.
	work := fmt.Sprintf("/proc/%d/root/work", j.proc.Pid())
	waitFor(t, "the job to write /work", func() bool {
		_, err := os.Stat(filepath.Join(work, "ready"))
		return err == nil
	})
	h := testUserNS.HostUID
	for path, want := range map[string][2]uint32{"f": {h, h}, "up": {h, h}, "d": {h + 7, h + 8}, "": {h, h}} {
		if u, g := owner(t, filepath.Join(work, path)); u != want[0] || g != want[1] {
			t.Errorf("/work/%s is %d:%d on the host, want %d:%d", path, u, g, want[0], want[1])
		}
	}
	_ = j.proc.Kill()
	j.wait()
	lines := strings.Split(strings.TrimSpace(j.stdout.String()), "\n")
	want := []string{"0:0 755", "0:0 600", "0:0 1777", "0:0 1777"}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Errorf("owners inside the job of /work, /work/up, /tmp, /dev/shm: %q, want %q", lines, want)
	}
	// The lower layer, the host directory, is untouched.
	if b, _ := os.ReadFile(filepath.Join(spec.WorkDir, "up")); string(b) != "u\n" {
		t.Errorf("uploaded file on the host after the job: %q", b)
	}
}

// TestUserNSNotHostRoot: what the command's capabilities would allow as
// the host's root, and do not in its user namespace.
func TestUserNSNotHostRoot(t *testing.T) {
	requiresRoot(t)
	// A root-only file appearing in /work once the job runs: the job's
	// CAP_DAC_OVERRIDE does not reach files of unmapped owners.
	spec, marker := newSpec(t, "sh", "-c", `while [ ! -e /work/go ]; do sleep 0.02; done
		for c in "cat /work/secret" "echo x >> /work/secret" "chown 0 /work/secret" "chmod 666 /work/secret" \
			"kill -0 1" "kill -TERM 1" "hostname evil" "ip addr add 10.9.9.9/32 dev lo" "ip link set lo down" \
			"mount -t tmpfs x /tmp" "unshare -U true" "nsenter -t 1 -n true" "cat /proc/1/environ" \
			"touch /usr/joblet-userns-test" "echo 1 > /proc/sys/kernel/sysrq" "chown 70000 /tmp"; do
			if sh -c "$c" 2>/dev/null; then echo "ALLOWED $c"; fi
		done
		id -u`)
	spec.UserNS = &testUserNS
	j, err := start(t, spec, marker)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove("/usr/joblet-userns-test") })
	if err := os.WriteFile(filepath.Join(spec.WorkDir, "secret"), []byte("host secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(spec.WorkDir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if res := j.wait(); res.ExitCode != 0 {
		t.Fatalf("%+v, stderr %q", res, j.stderr.String())
	}
	if out := strings.TrimSpace(j.stdout.String()); out != "0" {
		t.Errorf("allowed inside the job:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(spec.WorkDir, "secret")); string(b) != "host secret\n" {
		t.Errorf("root-only file changed: %q", b)
	}
	if u, _ := owner(t, filepath.Join(spec.WorkDir, "secret")); u != 0 {
		t.Errorf("root-only file given to uid %d", u)
	}
}

// TestUserNSNamespacesFromTheHost: seen from the host, the command is in a
// user namespace of its own, child of the host's, with no capability in
// the host's; its other namespaces, and the init, are the host's user
// namespace's, so those capabilities never reach its mounts or network.
func TestUserNSNamespacesFromTheHost(t *testing.T) {
	requiresRoot(t)
	spec, marker := newSpec(t, "sleep", "30")
	spec.UserNS = &testUserNS
	j, err := start(t, spec, marker)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = j.proc.Kill(); j.wait() }()
	var cmd string
	waitFor(t, "the command", func() bool {
		pids := markedPids(t, marker)
		for _, p := range pids {
			if p != strconv.Itoa(j.proc.Pid()) {
				cmd = p
			}
		}
		return cmd != ""
	})
	ns := func(pid, kind string) string {
		l, err := os.Readlink(filepath.Join("/proc", pid, "ns", kind))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	init := strconv.Itoa(j.proc.Pid())
	if ns(cmd, "user") == ns("self", "user") {
		t.Error("the command is in the host's user namespace")
	}
	if ns(init, "user") != ns("self", "user") {
		t.Error("the init is not in the host's user namespace")
	}
	for _, kind := range []string{"mnt", "pid", "net", "uts", "ipc"} {
		if ns(cmd, kind) != ns(init, kind) || ns(cmd, kind) == ns("self", kind) {
			t.Errorf("%s namespace: the command's %s, the init's %s, the host's %s", kind, ns(cmd, kind), ns(init, kind), ns("self", kind))
		}
	}
	status, err := os.ReadFile(filepath.Join("/proc", cmd, "status"))
	if err != nil {
		t.Fatal(err)
	}
	h := testUserNS.HostUID
	for _, want := range []string{fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d", h, h, h, h), fmt.Sprintf("Gid:\t%d\t%d\t%d\t%d", h, h, h, h), "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(string(status), want+"\n") {
			t.Errorf("/proc/%s/status lacks %q:\n%s", cmd, want, status)
		}
	}
}

// TestUserNSLowPorts: the job's root binds a port below 1024 in its own
// network namespace.
func TestUserNSLowPorts(t *testing.T) {
	requiresRoot(t)
	out, res := runAs(t, &testUserNS, "python3", "-c",
		"import socket; s = socket.socket(); s.bind(('127.0.0.1', 80)); s.listen(); print(s.getsockname()[1])")
	if res.ExitCode != 0 || strings.TrimSpace(out) != "80" {
		t.Fatalf("bind port 80: %q %+v", out, res)
	}
}

func TestUserNSCommandErrors(t *testing.T) {
	requiresRoot(t)
	spec, marker := newSpec(t, "/work/noexec")
	spec.UserNS = &testUserNS
	if err := os.WriteFile(filepath.Join(spec.WorkDir, "noexec"), []byte("#!/nonexistent\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := startErr(t, spec, marker); err == nil || !strings.Contains(err.Error(), "cannot execute /work/noexec") {
		t.Errorf("a script with a missing interpreter: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Error("the failed start took over 10 s")
	}
}

// startErr is start for a job expected not to start.
func startErr(t *testing.T, spec sandbox.Spec, marker string) (*job, error) {
	t.Helper()
	j, err := start(t, spec, marker)
	if err == nil {
		_ = j.proc.Kill()
		j.wait()
	}
	return j, err
}

func TestUserNSValidate(t *testing.T) {
	for _, u := range []sandbox.UserNS{
		{HostUID: 100000, HostGID: 100000, Size: 0},
		{HostUID: 0, HostGID: 100000, Size: 65536},
		{HostUID: 100000, HostGID: 0, Size: 65536},
		{HostUID: 4294967295 - 10, HostGID: 100000, Size: 11},
	} {
		if err := u.Validate(); err == nil {
			t.Errorf("%+v accepted", u)
		}
	}
	if err := testUserNS.Validate(); err != nil {
		t.Errorf("the default range: %v", err)
	}
	if err := (sandbox.UserNS{HostUID: 4294967295 - 11, HostGID: 1, Size: 11}).Validate(); err != nil {
		t.Errorf("a range ending at 4294967294: %v", err)
	}
	spec, _ := newSpec(t, "true")
	spec.UserNS = &sandbox.UserNS{HostUID: 0, HostGID: 0, Size: 1}
	spec.Stdout, spec.Stderr = os.Stdout, os.Stderr
	if _, err := sandbox.Start(spec); err == nil {
		t.Error("Start mapped the job's root to the host's")
	}
}

func TestCheckUserNS(t *testing.T) {
	requiresRoot(t)
	if err := sandbox.CheckUserNS(testUserNS); err != nil {
		t.Errorf("the default range on this host: %v", err)
	}
	if err := sandbox.CheckUserNS(sandbox.UserNS{HostUID: 0, HostGID: 1, Size: 1}); err == nil {
		t.Error("a range mapping the host's root accepted")
	}
}

// TestUserNSUnderStrictUmask: under systemd the isolator runs with umask
// 0077; the files the init writes for the job must still be readable by
// the job's mapped root, and the job starts with the usual 022.
func TestUserNSUnderStrictUmask(t *testing.T) {
	requiresRoot(t)
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	out, res := runAs(t, &testUserNS, "sh", "-c", "cat /etc/hosts /etc/passwd /etc/hostname >/dev/null && ls / >/dev/null && umask")
	if res.ExitCode != 0 || strings.TrimSpace(out) != "0022" {
		t.Fatalf("got %q, %+v; want the job to read its /etc and report umask 0022", out, res)
	}
}

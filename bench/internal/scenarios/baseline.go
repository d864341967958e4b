package scenarios

import (
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Baselines are the commands the suite's start latency is compared with,
// each run from this process exactly as it would run a job's command.
var (
	// ForkExec is a bare fork+exec of /bin/true.
	ForkExec = []string{"/bin/true"}
	// Unshare gives /bin/true new PID, mount, UTS and IPC namespaces.
	Unshare = []string{"unshare", "--pid", "--fork", "--mount", "--uts", "--ipc", "/bin/true"}
	// UnshareNet is Unshare plus a network namespace.
	UnshareNet = []string{"unshare", "--pid", "--fork", "--mount", "--uts", "--ipc", "--net", "/bin/true"}
)

// Bwrap is bubblewrap doing what a job's init does: every namespace
// (without a network namespace unless net), a fresh root of read-only
// system directories, fresh /proc, minimal /dev, private /tmp.
func Bwrap(net bool) []string {
	args := []string{"bwrap", "--unshare-all"}
	if !net {
		args = append(args, "--share-net")
	}
	return append(args, "--die-with-parent",
		"--ro-bind", "/usr", "/usr",
		"--symlink", "usr/bin", "/bin",
		"--symlink", "usr/sbin", "/sbin",
		"--symlink", "usr/lib", "/lib",
		"--symlink", "usr/lib64", "/lib64",
		"--ro-bind", "/etc", "/etc",
		"--proc", "/proc",
		"--dev", "/dev",
		"--tmpfs", "/tmp",
		"--dir", "/work",
		"--chdir", "/work",
		"--clearenv",
		"/bin/true")
}

// CommandLatency runs argv n times (after a few unmeasured runs) and times
// each from fork to its exit being collected.
func CommandLatency(argv []string, n int) ([]time.Duration, error) {
	var out []time.Duration
	for i := -3; i < n; i++ {
		cmd := exec.Command(argv[0], argv[1:]...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		t0 := time.Now()
		err := cmd.Run()
		d := time.Since(t0)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
		}
		if i >= 0 {
			out = append(out, d)
		}
	}
	return out, nil
}

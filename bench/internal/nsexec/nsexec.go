// Package nsexec runs the benchmark inside a private network and mount
// namespace. The suite's netd creates bridges, veth pairs and iptables
// rules; in a namespace of their own they can never touch the host's
// network, and every mount the suite makes dies with the namespace.
package nsexec

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
)

// marker is set in the environment of the re-executed benchmark; its
// value names the namespaces it was started from, which it must not be in.
const marker = "JOBLET_BENCH_PRIVATE_NS"

var namespaces = []string{"net", "mnt"}

// Inside reports whether this process is the re-executed one.
func Inside() bool { return os.Getenv(marker) != "" }

// Reexec runs this executable again with args under
// `unshare --net --mount --propagation private` and returns its exit code.
// SIGINT and SIGTERM are passed on, so the inner run can stop its suite.
func Reexec(args []string) (int, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("find own executable: %w", err)
	}
	cmd := exec.Command("unshare", append([]string{"--net", "--mount", "--propagation", "private", "--", self}, args...)...)
	var own []string
	for _, ns := range namespaces {
		id, err := os.Readlink("/proc/self/ns/" + ns)
		if err != nil {
			return 0, fmt.Errorf("own %s namespace: %w", ns, err)
		}
		own = append(own, id)
	}
	cmd.Env = append(os.Environ(), marker+"="+strings.Join(own, ","))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("unshare: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return ee.ExitCode(), nil
			}
			if err != nil {
				return 0, fmt.Errorf("unshare: %w", err)
			}
			return 0, nil
		}
	}
}

// Prepare checks that this process really is in a network and mount
// namespace other than those it was started from, and brings up its
// loopback interface, the only one it has.
func Prepare() error {
	outer := strings.Split(os.Getenv(marker), ",")
	if len(outer) != len(namespaces) {
		return fmt.Errorf("refusing to run: %s=%q does not name the outer namespaces", marker, os.Getenv(marker))
	}
	for i, ns := range namespaces {
		own, err := os.Readlink("/proc/self/ns/" + ns)
		if err != nil {
			return fmt.Errorf("own %s namespace: %w", ns, err)
		}
		if own == outer[i] {
			return fmt.Errorf("refusing to run: still in the outer %s namespace (%s)", ns, own)
		}
	}
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return fmt.Errorf("bring up lo: %w: %s", err, out)
	}
	return nil
}

package manager

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// Root tests program bridges, veth pairs, iptables and ip_forward. They must
// never do that to the machine running them: as root, the test binary runs
// itself again inside a network and mount namespace of its own (the "test
// host"), and refuses to go on if that did not happen.
const (
	envInner   = "JOBLET_NETD_TEST_NETNS"
	envOuterNS = "JOBLET_NETD_TEST_OUTER_NS"
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		os.Exit(m.Run()) // root tests skip themselves
	}
	if os.Getenv(envInner) == "" {
		os.Exit(reexec())
	}
	if outer, err := netnsInode(); err != nil || fmt.Sprint(outer) == os.Getenv(envOuterNS) {
		fmt.Fprintln(os.Stderr, "netd tests: not inside a private network namespace; refusing to run", err)
		os.Exit(3)
	}
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "lo up: %v %s\n", err, out)
		os.Exit(3)
	}
	os.Exit(m.Run())
}

func netnsInode() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

func reexec() int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	ino, err := netnsInode()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	cmd := exec.Command("unshare", append([]string{"--net", "--mount", "--propagation", "private", "--", exe}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envInner+"=1", fmt.Sprintf("%s=%d", envOuterNS, ino))
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "run tests in a private netns:", err)
		return 3
	}
	return 0
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, bridges and iptables rules (inside a private netns)")
	}
}

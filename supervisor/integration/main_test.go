package integration

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// The suite's netd programs bridges, veth pairs, iptables rules and
// ip_forward. The machine running the tests must never get those: as root,
// this test binary runs itself again inside a network and mount namespace
// of its own, and refuses to go on if that did not happen. The supervisor,
// its services and every probe then live in that namespace, and all of it
// goes away with it.
const (
	envInner   = "JOBLET_SUPERVISOR_TEST_NETNS"
	envOuterNS = "JOBLET_SUPERVISOR_TEST_OUTER_NS"
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		os.Exit(m.Run()) // root tests skip themselves
	}
	if os.Getenv(envInner) == "" {
		os.Exit(reexec())
	}
	if ino, err := netnsInode(); err != nil || fmt.Sprint(ino) == os.Getenv(envOuterNS) {
		fmt.Fprintln(os.Stderr, "supervisor integration tests: not inside a private network namespace; refusing to run", err)
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
		fmt.Fprintln(os.Stderr, "run the tests in a private netns:", err)
		return 3
	}
	return 0
}

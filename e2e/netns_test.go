package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"

	"golang.org/x/sys/unix"
)

// The suite's netd makes bridges, veth pairs and iptables rules and sets
// ip_forward, which a test must never do to the machine running it. So, as
// root, the test binary runs itself again inside a network and mount
// namespace of its own (the "test host"): bin/joblet, its services, the
// jobs and every rnx the tests run all live there, and so does everything
// netd makes, which goes away with the namespace. The inner run refuses to
// go on if it is not in a namespace of its own.
const (
	envInnerNetns = "JOBLET_E2E_NETNS"
	envOuterNetns = "JOBLET_E2E_OUTER_NETNS"
)

// enterPrivateNetns runs the tests in a private network namespace. It
// returns done=true with the exit code when this process only ran them
// there (or failed to); done=false means this process is the one inside
// (or not root, where every test skips) and should run the tests itself.
func enterPrivateNetns() (code int, done bool) {
	if os.Geteuid() != 0 {
		return 0, false
	}
	if os.Getenv(envInnerNetns) == "" {
		return rerunInNetns(), true
	}
	if ino, err := netnsInode(); err != nil || fmt.Sprint(ino) == os.Getenv(envOuterNetns) {
		fmt.Fprintln(os.Stderr, "e2e: not inside a private network namespace; refusing to run", err)
		return 3, true
	}
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: lo up: %v %s\n", err, out)
		return 3, true
	}
	return 0, false
}

func netnsInode() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

func rerunInNetns() int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 3
	}
	ino, err := netnsInode()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 3
	}
	cmd := exec.Command("unshare", append([]string{"--net", "--mount", "--propagation", "private", "--", exe}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envInnerNetns+"=1", fmt.Sprintf("%s=%d", envOuterNetns, ino))
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "e2e: run the tests in a private network namespace:", err)
		return 3
	}
	return 0
}

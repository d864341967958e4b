package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The escape probe (e2e/internal/probe) run in jobs on every kind of
// network, with the host's state compared across the runs: SECURITY.md's
// helper sockets, host services, mount flags and read-only binds
// (submounts included), cgroupfs and controlling-terminal lines.

// escapeProbe builds the probe, statically, into a directory the test removes.
func escapeProbe(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "escape-probe")
	cmd := exec.Command("go", "build", "-o", path, "./internal/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the escape probe: %v: %s", err, out)
	}
	return path
}

// listeningUnixSockets returns the listening Unix sockets of the suite's
// network namespace (/proc/net/unix is per namespace): paths, and abstract
// names as @NAME.
func listeningUnixSockets(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode Path
		fl := strings.Fields(sc.Text())
		if len(fl) < 8 || fl[3] != "00010000" { // __SO_ACCEPTCON: listening
			continue
		}
		out = append(out, fl[7])
	}
	return out
}

func TestSecurityEscapeProbe(t *testing.T) {
	s := needSuite(t)
	probe := escapeProbe(t)

	// Host services a job must not reach: a TCP service on every address
	// of the suite's namespace, one on an abstract Unix socket, and the
	// gateway itself (on loopback).
	tcp, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	abstract, err := net.Listen("unix", fmt.Sprintf("\x00joblet-e2e-probe-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer abstract.Close()
	for _, l := range []net.Listener{tcp, abstract} {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	hostPort := strconv.Itoa(tcp.Addr().(*net.TCPAddr).Port)
	gwPort := strconv.Itoa(s.port)
	if c, err := net.Dial("tcp", "127.0.0.1:"+hostPort); err != nil {
		t.Fatalf("the host service is not reachable from the host itself, so the probe would prove nothing: %v", err)
	} else {
		c.Close()
	}

	// The helpers' sockets, as listed by the kernel: isolator, logd, netd,
	// scheduler, and the supervisor's plugin sockets.
	var sockets []string
	for _, p := range listeningUnixSockets(t) {
		if strings.HasPrefix(p, "@") || strings.Contains(p, s.devDir) || strings.Contains(p, "plugin") {
			sockets = append(sockets, p)
		}
	}
	helpers := 0
	for _, p := range sockets {
		if strings.HasSuffix(p, ".sock") && strings.Contains(p, s.devDir) {
			helpers++
		}
	}
	if helpers < 4 {
		t.Fatalf("found %d helper sockets of the suite in /proc/net/unix, want 4 or more: %q", helpers, sockets)
	}

	// A mount below a system directory, made after the suite started: the
	// job's bind of /usr must carry it read-only, nosuid and nodev too.
	const sub = "/usr/local/games"
	if err := unix.Mount("joblet-e2e-sub", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount a tmpfs on %s (in the suite's own mount namespace): %v", sub, err)
	}
	defer func() {
		if err := unix.Unmount(sub, 0); err != nil {
			t.Errorf("unmount %s: %v", sub, err)
		}
	}()

	args := []string{"tcp=127.0.0.1:" + gwPort, "tcp=127.0.0.1:" + hostPort, "tcp=gw:" + gwPort, "tcp=gw:" + hostPort, "ro=" + sub}
	for _, p := range sockets {
		args = append(args, "unix="+p)
	}

	mustRun(t, "true") // the job cgroup parent exists from the first job on
	before := snapshotHost(t, s)
	for _, network := range []string{"none", "bridge", "isolated"} {
		t.Run(network, func(t *testing.T) {
			r := rnx(t, append([]string{"run", "--network=" + network, "--upload=" + probe, "/work/escape-probe"}, args...)...)
			if r.code != 0 {
				t.Fatalf("the probe did not run: %v", r)
			}
			got := map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
				f := strings.Fields(line)
				if len(f) != 3 {
					t.Fatalf("probe line %q: want NAME RESULT DETAIL", line)
				}
				got[f[0]] = f[1] + " " + f[2]
				if f[1] != "blocked" {
					t.Errorf("%s in a job on network %s: %s %s", f[0], network, f[1], f[2])
				}
			}
			want := []string{"mount_flags", "ro_write:/", "ro_write:/usr", "ro:" + sub, "cgroupfs", "cgroup_mount",
				"ctty_open", "ctty_steal:0", "ctty_steal:1", "ctty_steal:2", "mount_shared"}
			for _, a := range args {
				kind, target, _ := strings.Cut(a, "=")
				if kind != "ro" {
					want = append(want, kind+":"+target)
				}
			}
			for _, name := range want {
				if _, ok := got[name]; !ok {
					t.Errorf("the probe reported nothing for %s; output:\n%s", name, r.stdout)
				}
			}
			// The refusals that show the mechanism, not just a failure.
			for name, res := range map[string]string{
				"ro:" + sub: "blocked EROFS", "ro_write:/usr": "blocked EROFS", "cgroup_mount": "blocked EPERM",
				"mount_shared": "blocked EPERM", "ctty_open": "blocked ENXIO",
			} {
				if got[name] != res {
					t.Errorf("%s: %q, want %q", name, got[name], res)
				}
			}
		})
	}
	hostUnchanged(t, s, before)
}

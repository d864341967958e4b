// Command probe runs inside a job and tries to get out: it connects to the
// helpers' sockets and to host services, writes to read-only mounts, looks
// for mounts without nosuid or nodev, tries to reach a cgroupfs and a
// controlling terminal. It prints one line per attempt:
//
//	NAME blocked DETAIL   the attempt failed, as it must
//	NAME ESCAPED DETAIL   the attempt worked: a hole in the sandbox
//
// The e2e tests run it (copied into /work by upload) and assert every line.
// Arguments name the targets only the test knows:
//
//	unix=PATH       connect to a Unix stream socket (@NAME: abstract)
//	tcp=HOST:PORT   open a TCP connection; HOST "gw" is the job's default
//	                gateway (the host's address on the job's bridge)
//	ro=PATH         PATH must be a read-only, nosuid, nodev mount
//
// Every write it tries is to a name no one else uses, and removed if it
// lands, so a sandbox with a hole does not leave litter on the host.
package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	for _, arg := range os.Args[1:] {
		kind, target, _ := strings.Cut(arg, "=")
		switch kind {
		case "unix":
			dial("unix:"+target, "unix", target)
		case "tcp":
			dialTCP(target)
		case "ro":
			readOnlyMount(target)
		default:
			fmt.Fprintf(os.Stderr, "probe: unknown argument %q\n", arg)
			os.Exit(2)
		}
	}
	mountFlags()
	systemDirsReadOnly()
	cgroups()
	terminal()
	mountPropagation()
}

func report(name string, err error, escaped string) {
	if err != nil {
		fmt.Printf("%s blocked %s\n", name, errName(err))
		return
	}
	fmt.Printf("%s ESCAPED %s\n", name, escaped)
}

// errName is the errno's name when err carries one, so tests can match it.
func errName(err error) string {
	var en unix.Errno
	if errors.As(err, &en) {
		return unix.ErrnoName(en)
	}
	return strings.ReplaceAll(err.Error(), " ", "_")
}

func dial(name, network, addr string) {
	if strings.HasPrefix(addr, "@") {
		addr = "\x00" + addr[1:]
	}
	c, err := net.DialTimeout(network, addr, 1500*time.Millisecond)
	if err == nil {
		c.Close()
	}
	report(name, err, "connected")
}

func dialTCP(target string) {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		fmt.Fprintf(os.Stderr, "probe: tcp=%s: %v\n", target, err)
		os.Exit(2)
	}
	if host == "gw" {
		if host = defaultGateway(); host == "" {
			// No route off the job's network: the host cannot be reached.
			fmt.Printf("tcp:%s blocked no_default_route\n", target)
			return
		}
	}
	dial("tcp:"+target, "tcp", net.JoinHostPort(host, port))
}

// defaultGateway reads the default route's gateway from /proc/net/route
// (little-endian hex), or "" without one.
func defaultGateway() string {
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 3 || f[1] != "00000000" {
			continue
		}
		var v uint32
		if _, err := fmt.Sscanf(f[2], "%08X", &v); err != nil {
			continue
		}
		return net.IPv4(byte(v), byte(v>>8), byte(v>>16), byte(v>>24)).String()
	}
	return ""
}

// mount is one line of /proc/self/mountinfo.
type mount struct {
	point, fstype string
	opts          map[string]bool // per-mount options
}

func mounts() []mount {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		fmt.Printf("mountinfo ESCAPED cannot_read_%s\n", errName(err))
		return nil
	}
	var out []mount
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		pre, post, _ := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 6 || len(g) < 1 {
			continue
		}
		m := mount{point: unescape(f[4]), fstype: g[0], opts: map[string]bool{}}
		for _, o := range strings.Split(f[5], ",") {
			m.opts[o] = true
		}
		out = append(out, m)
	}
	return out
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// deviceNode reports whether p is a character device: a bind of one
// (/dev/null, or /dev/null over /proc/keys) must lack nodev to be opened,
// and holds no other file for nosuid to matter to. A bound block device
// gets no such pass.
func deviceNode(p string) bool {
	var st unix.Stat_t
	return unix.Stat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR
}

// mountFlags: every mount is nosuid and nodev, but device nodes and the
// job's own devpts, whose ptys must open.
func mountFlags() {
	ms := mounts()
	var bad []string
	for _, m := range ms {
		if deviceNode(m.point) {
			continue
		}
		if !m.opts["nosuid"] {
			bad = append(bad, m.point+":suid")
		}
		if !m.opts["nodev"] && m.fstype != "devpts" {
			bad = append(bad, m.point+":dev")
		}
	}
	if len(ms) == 0 {
		return
	}
	if len(bad) > 0 {
		fmt.Printf("mount_flags ESCAPED %s\n", strings.Join(bad, ","))
		return
	}
	fmt.Printf("mount_flags blocked %d_mounts_nosuid_nodev\n", len(ms))
}

// systemDirsReadOnly: the root and every mount at or below a system
// directory are read-only, and writing to them fails.
func systemDirsReadOnly() {
	for _, m := range mounts() {
		if m.point != "/" && !isSystemDir(m.point) {
			continue
		}
		writeTo("ro_write:"+m.point, m.point, m.opts["ro"])
	}
}

func isSystemDir(p string) bool {
	for _, d := range []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"} {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// readOnlyMount checks one mount the test named (a submount it made).
func readOnlyMount(p string) {
	for _, m := range mounts() {
		if m.point == p {
			if !m.opts["nosuid"] || !m.opts["nodev"] {
				fmt.Printf("ro:%s ESCAPED flags_%v\n", p, m.opts)
				return
			}
			writeTo("ro:"+p, p, m.opts["ro"])
			return
		}
	}
	fmt.Printf("ro:%s ESCAPED not_a_mount_in_the_job\n", p)
}

// writeTo creates and removes a file in dir; the mount must say ro too.
func writeTo(name, dir string, roFlag bool) {
	f := dir + "/.joblet-probe"
	if dir == "/" {
		f = "/.joblet-probe"
	}
	err := os.WriteFile(f, []byte("x"), 0o644)
	if err == nil {
		os.Remove(f)
		report(name, nil, "file_written")
		return
	}
	if !roFlag {
		fmt.Printf("%s ESCAPED mount_not_ro_(write_failed_%s)\n", name, errName(err))
		return
	}
	report(name, err, "")
}

// cgroups: no cgroupfs is mounted, none can be, and the root cgroup's
// cgroup.procs, the way out of a cgroup, is not there to write.
func cgroups() {
	for _, m := range mounts() {
		if m.fstype == "cgroup" || m.fstype == "cgroup2" {
			fmt.Printf("cgroupfs ESCAPED mounted_at_%s\n", m.point)
			return
		}
	}
	fmt.Println("cgroupfs blocked not_mounted")
	dir, err := os.MkdirTemp("/tmp", "cg")
	if err != nil {
		fmt.Printf("cgroup_mount ESCAPED mkdir_%s\n", errName(err))
		return
	}
	defer os.Remove(dir)
	err = unix.Mount("none", dir, "cgroup2", 0, "")
	if err == nil {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
	}
	report("cgroup_mount", err, "mounted")
	for _, p := range []string{"/sys/fs/cgroup/cgroup.procs", "/sys/fs/cgroup/unified/cgroup.procs"} {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err == nil {
			f.Close()
		}
		report("cgroup_procs:"+p, err, "opened_for_write")
	}
}

// terminal: there is no controlling terminal to open or steal.
func terminal() {
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err == nil {
		f.Close()
	}
	report("ctty_open", err, "opened")
	for fd := 0; fd <= 2; fd++ {
		err := unix.IoctlSetInt(fd, unix.TIOCSCTTY, 0)
		report(fmt.Sprintf("ctty_steal:%d", fd), err, "acquired")
	}
}

// mountPropagation: making / shared again (so mounts would reach the
// host) is refused.
func mountPropagation() {
	err := unix.Mount("", "/", "", unix.MS_SHARED|unix.MS_REC, "")
	report("mount_shared", err, "made_shared")
}

package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Init runs the job's init; it never returns. main calls it first thing when
// IsInit reports true.
func Init() {
	if os.Args[0] == probeArg0 {
		probeStage()
	}
	CloseInheritedExe(fdInitExe)
	reaper := inheritedReaper()
	// The daemon's umask (systemd gives the isolator 0077) must shape
	// neither the files the init writes for the job (/etc, which the job's
	// mapped root, not host root, has to read) nor the job's own: every job
	// starts with the conventional 022.
	unix.Umask(0o022)
	// Installed before anything else so that a signal to PID 1 from the host
	// is caught (the kernel drops signals to a namespace init without a
	// handler) and forwarded once the command runs.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	// The handover's marker (handover.go).
	flush := make(chan os.Signal, 1)
	signal.Notify(flush, flushSignal)
	// The command is started from this thread once it is confined
	// (confine.go); it stays locked, so no other goroutine ever runs on it.
	runtime.LockOSThread()

	report := json.NewEncoder(os.NewFile(fdSync, "sandbox-sync"))
	pid, err := setup()
	if err != nil {
		_ = report.Encode(errorMessage(err))
		os.Exit(1)
	}
	_ = report.Encode(message{Type: msgStarted})

	flushed := make(chan struct{}, 1)
	go forwarder(sigs, flush, flushed)
	if reaper >= 0 {
		// Execs the reaper, which does the rest, unless the command has
		// already exited: finishing here costs less then.
		handOver(reaper, pid, flushed)
	}
	ws := reap(pid)
	m := message{Type: msgExit, ExitCode: ws.ExitStatus()}
	if ws.Signaled() {
		m.Signal = int(ws.Signal())
		m.ExitCode = 128 + m.Signal
	}
	// Before the end is reported: the report means that nothing of the job
	// runs any more but this init, which only exits after it (see
	// Process.Wait).
	endNamespace()
	// The parent may be gone (isolator restart): nobody to tell, still exit.
	_ = report.Encode(m)
	os.Exit(0)
}

// endNamespace kills every other process of the PID namespace and reaps
// them all. The kernel would kill them too once the init exits, but only
// after the init's own teardown (its mount namespace, with an RCU grace
// period or two), which the job's end is no longer made to wait for.
// kill(-1) cannot miss a process being forked: the parent is signalled
// before its child is attached, and the fork fails.
func endNamespace() {
	_ = unix.Kill(-1, unix.SIGKILL)
	for {
		_, err := unix.Wait4(-1, nil, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil { // ECHILD: no process left but this one
			return
		}
	}
}

// setup reads the spec, builds the sandbox and starts the command; it returns
// the command's pid. Reading the spec is the start gate: the parent writes it
// only once this process is in the job's cgroup (see sync.go).
func setup() (int, error) {
	// Nobody but the host's root may trace the init or open its /proc
	// files (mem, environ, exe, fd): the command runs as the same uid.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return 0, setupErr("make the init non-dumpable", err)
	}
	// Before the gate: nothing of any job (see rootfs.go), and ready when
	// the job comes to a preforked init. A failure is reported once the
	// gate opens, as the job's start error.
	root, rootErr := buildCommon()
	// A network namespace of its own (loopback only) is the init's alone
	// too: its lo is brought up now, off the job's start, where the RTNL
	// lock it takes may wait for netd's work on the host's links. A
	// preforked init that then joins netd's namespace leaves this one to
	// its other threads, unused.
	loUp := false
	if rootErr == nil && slices.Contains(os.Environ(), freshNetnsEnv) {
		if err := loopbackUp(); err != nil {
			rootErr = setupErr("bring up lo", err)
		}
		loUp = rootErr == nil
	}
	netns, err := readGate()
	if err != nil {
		return 0, setupErr("read spec", err)
	}
	if rootErr != nil {
		if netns >= 0 {
			unix.Close(netns)
		}
		return 0, rootErr
	}
	in := os.NewFile(fdSpec, "sandbox-spec")
	var spec initSpec
	err = json.NewDecoder(in).Decode(&spec)
	in.Close()
	if err == nil && len(spec.Args) == 0 {
		err = errors.New("no command")
	}
	if err == nil && spec.JoinNetns != (netns >= 0) {
		err = fmt.Errorf("network namespace to join: sent %v, in the spec %v", netns >= 0, spec.JoinNetns)
	}
	if err != nil {
		if netns >= 0 {
			unix.Close(netns)
		}
		return 0, setupErr("read spec", err)
	}
	if netns >= 0 {
		// This thread, locked, builds the job's root and forks the
		// command: both happen in the namespace it is in.
		err := unix.Setns(netns, unix.CLONE_NEWNET)
		unix.Close(netns)
		if err != nil {
			return 0, setupErr("join the job's network namespace", err)
		}
	}
	if spec.UserNS != nil {
		// Before /proc/sys is made read-only: root in the job is not root
		// in its network namespace (see userns.go), and should still bind
		// ports below 1024 there.
		if err := unprivilegedPorts(); err != nil {
			return 0, setupErr("open low ports to the job's user namespace", err)
		}
	}
	if err := buildJobRoot(root, &spec); err != nil {
		return 0, err
	}
	if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
		return 0, setupErr("set hostname", err)
	}
	if spec.FreshNetns && !loUp {
		// netd brings up lo in the namespaces it prepares.
		if err := loopbackUp(); err != nil {
			return 0, setupErr("bring up lo", err)
		}
	}
	if err := closeExecFrom(3); err != nil {
		return 0, setupErr("mark descriptors close-on-exec", err)
	}
	if err := confineThread(); err != nil {
		return 0, err
	}
	return startCommand(&spec)
}

// readGate waits at the start gate: it reads the spec socket's first
// byte, which says whether a network namespace comes with it, and returns
// that namespace's descriptor (-1: none). EOF (the parent closed the
// socket unwritten) is an error: the init then exits having done nothing.
func readGate() (int, error) {
	var b [1]byte
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(fdSpec, b[:], oob, unix.MSG_CMSG_CLOEXEC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return -1, err
		}
		if n == 0 {
			return -1, io.EOF
		}
		fds, err := receivedFds(oob[:oobn])
		switch {
		case err != nil:
			return -1, err
		case b[0] == gateNetns && len(fds) == 1:
			return fds[0], nil
		case b[0] == gateGo && len(fds) == 0:
			return -1, nil
		}
		for _, fd := range fds {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("gate byte %d with %d descriptors", b[0], len(fds))
	}
}

// receivedFds are the descriptors of SCM_RIGHTS messages in oob.
func receivedFds(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		f, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		fds = append(fds, f...)
	}
	return fds, nil
}

// startCommand starts the job's command from inside the new root
// (stage.go).
func startCommand(spec *initSpec) (int, error) {
	path, err := lookPath(spec.Args[0], pathOf(spec.Env))
	if err != nil {
		return 0, err
	}
	stdout := os.NewFile(fdStdout, "stdout")
	stderr := os.NewFile(fdStderr, "stderr")
	defer stdout.Close()
	defer stderr.Close()
	return startStage(spec, path, stdout, stderr)
}

// unprivilegedPorts lets any uid bind any port in the job's network
// namespace (the one the init is in): the ports are the job's alone.
func unprivilegedPorts() error {
	err := os.WriteFile("/proc/sys/net/ipv4/ip_unprivileged_port_start", []byte("0\n"), 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // no IPv4
	}
	return err
}

// defaultPath is used to find the command when Env sets no PATH.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func pathOf(env []string) string {
	path := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v // the last one wins, as with getenv
		}
	}
	return path
}

// lookPath finds name like execvp would, but only in absolute directories of
// path: a relative entry would depend on the working directory.
func lookPath(name, path string) (string, error) {
	notFound := &stepError{class: classNotFound, step: "look up " + name, err: fs.ErrNotExist}
	if strings.Contains(name, "/") {
		if _, err := os.Stat(name); err != nil {
			return "", notFound
		}
		return name, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", notFound
}

// closeExecFrom marks every descriptor from lowest up close-on-exec, so the
// command gets only the three it is given. The Go runtime's own descriptors
// stay open in the init.
func closeExecFrom(lowest int) error {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < lowest {
			continue
		}
		// The descriptor ReadDir used is closed by now: EBADF is expected.
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && !errors.Is(err, unix.EBADF) {
			return fmt.Errorf("fd %d: %w", fd, err)
		}
	}
	return nil
}

// reap waits for children (the command, and every orphan of the namespace,
// which the kernel reparents to PID 1) until the command itself exits.
func reap(main int) unix.WaitStatus {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			// ECHILD: the command is gone without being seen, which cannot
			// happen while we are its parent; report it as killed.
			return unix.WaitStatus(unix.SIGKILL)
		case pid == main:
			return ws
		}
	}
}

// loopbackUp sets IFF_UP on lo in the job's network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set flags: %w", err)
	}
	return nil
}

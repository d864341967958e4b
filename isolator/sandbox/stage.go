package sandbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The job's command is started by a fork of the init's confined thread
// (confine.go) whose child makes only raw system calls (rawexec_linux.go),
// in the job's user namespace (CLONE_NEWUSER, with the maps the init
// writes) when it has one:
//
//	init (host userns)                 child (job's userns, uid 0)
//	──────────────────                 ───────────────────────────
//	build the argv, env, capability
//	sets and filter program; pipe(report)
//	clone [CLONE_NEWUSER] ────────────▶ wait for the maps
//	write uid_map, gid_map; "go" ─────▶ setsid, setgroups/setgid/setuid 0,
//	                                    stdio, open files limit, bounding
//	                                    set, capset, ambient cleared,
//	                                    no_new_privs, seccomp filter,
//	                                    execve(command)
//	read report: EOF = the command ◀─── ok: the command runs (report closed)
//	  runs; a record = it failed    ◀── failed: step, errno; exit 253
//
// The filter cannot be installed in the init: it refuses CLONE_NEWUSER,
// which the init needs to start the command. With no user namespace the
// child is a vfork child (CLONE_VM|CLONE_VFORK), as the stdlib's are: no
// copy of the init's page tables, and the init waits for its execve.

// probeArg0 is argv[0] of CheckUserNS's probe.
const probeArg0 = "joblet-sandbox-probe"

// fdProbeExe is the probe's inherited copy of its own executable (WithExe).
const fdProbeExe = 3

// probeStage is CheckUserNS's probe: it is uid 0 in its user namespace and
// can install the job's seccomp filter.
func probeStage() {
	CloseInheritedExe(fdProbeExe)
	runtime.LockOSThread()
	if os.Getuid() != 0 || os.Getgid() != 0 {
		fmt.Fprintf(os.Stderr, "uid %d gid %d, not 0 in the user namespace\n", os.Getuid(), os.Getgid())
		os.Exit(1)
	}
	if err := installSeccomp(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// stepSeccomp names the filter's installation in errors.
const stepSeccomp = "install seccomp filter"

// startStage starts the command at path, in the job's user namespace if it
// has one, and returns its pid once the command runs (see above).
func startStage(spec *initSpec, path string, stdout, stderr *os.File) (int, error) {
	caps, err := jobCaps()
	if err != nil {
		return 0, err
	}
	filter, err := jobFilter()
	if err != nil {
		return 0, setupErr(stepSeccomp, err)
	}
	p := &execPlan{caps: caps, filter: filter, nofile: commandNofile(), flags: uintptr(unix.SIGCHLD)}
	if p.path, err = syscall.BytePtrFromString(path); err == nil {
		if p.argv, err = syscall.SlicePtrFromStrings(spec.Args); err == nil {
			p.envv, err = syscall.SlicePtrFromStrings(spec.Env)
		}
	}
	if err != nil {
		return 0, setupErr("start the command", err)
	}
	// Stdin: /dev/null of the new root.
	null, err := os.Open(os.DevNull)
	if err != nil {
		return 0, setupErr("open "+os.DevNull, err)
	}
	defer null.Close()
	var rep, maps [2]int
	if err := unix.Pipe2(rep[:], unix.O_CLOEXEC); err != nil {
		return 0, setupErr("report pipe", err)
	}
	defer unix.Close(rep[0])
	p.report = uintptr(rep[1])
	p.stdio = [3]uintptr{null.Fd(), stdout.Fd(), stderr.Fd()}
	u := spec.UserNS
	if u != nil {
		if err := unix.Pipe2(maps[:], unix.O_CLOEXEC); err != nil {
			unix.Close(rep[1])
			return 0, setupErr("maps pipe", err)
		}
		p.userns, p.mapR, p.mapW = true, uintptr(maps[0]), uintptr(maps[1])
		p.flags |= unix.CLONE_NEWUSER
	} else if cloneVM {
		p.flags |= unix.CLONE_VM | unix.CLONE_VFORK
	}
	// The child dups stdio onto 0-2 one by one: a descriptor of the plan
	// below 3 could be overwritten before its use. The init's own 0-2 are
	// open (its parent gives it /dev/null), so none is.
	fds := append(p.stdio[:], p.report)
	if p.userns {
		fds = append(fds, p.mapR, p.mapW)
	}
	if low := slices.Min(fds); low < 3 {
		unix.Close(rep[1])
		closeMaps(p)
		return 0, setupErr("start the command", fmt.Errorf("descriptor %d would be overwritten by the command's stdio", low))
	}
	pid, err := forkCommand(p)
	unix.Close(rep[1])
	if p.userns {
		unix.Close(maps[0])
		defer unix.Close(maps[1])
	}
	if err != nil {
		return 0, setupErr("fork the command", err)
	}
	if p.userns {
		werr := u.writeMaps(pid)
		// The child goes on only on a 0; anything else is its errno.
		var verdict uint32
		if werr != nil {
			verdict = uint32(unix.EPERM)
			var errno syscall.Errno
			if errors.As(werr, &errno) {
				verdict = uint32(errno)
			}
		}
		_, _ = unix.Write(maps[1], binary.NativeEndian.AppendUint32(nil, verdict))
		if werr != nil {
			waitPid(pid)
			return 0, setupErr("write the user namespace's maps", werr)
		}
	}
	var b [len(childReport{}) * 4]byte
	n, err := readFull(rep[0], b[:])
	if n == 0 && err == nil {
		return pid, nil // closed by a successful execve
	}
	waitPid(pid)
	if err == nil && n != len(b) {
		err = fmt.Errorf("%d bytes of %d", n, len(b))
	}
	if err != nil {
		return 0, setupErr("read the command's start report", err)
	}
	var r childReport
	for i := range r {
		r[i] = binary.NativeEndian.Uint32(b[4*i:])
	}
	return 0, r.err(path)
}

// writeMaps writes the maps of pid's user namespace (see UserNS.apply),
// setgroups left allowed.
func (u UserNS) writeMaps(pid int) error {
	for _, m := range []struct {
		file string
		host uint32
	}{{"uid_map", u.HostUID}, {"gid_map", u.HostGID}} {
		path := "/proc/" + strconv.Itoa(pid) + "/" + m.file
		line := "0 " + strconv.FormatUint(uint64(m.host), 10) + " " + strconv.FormatUint(uint64(u.Size), 10) + "\n"
		fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		_, err = unix.Write(fd, []byte(line))
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

// defaultNofile is the soft open files limit a command gets back where
// the init's was raised by the Go runtime: the kernel's default, and
// systemd's for services.
const defaultNofile = 1024

// commandNofile returns the open files limit the command starts with, or
// nil to leave it as the init's. A Go program raises its soft limit to
// the hard limit less one at start, and gives its children back the one
// it started with, which the init, started by a Go program, had too: the
// exec stage's syscall.Exec did. That value is private to the syscall
// package; where the init's limit bears the Go raise's mark (hard - 1),
// the command gets defaultNofile, the limit the isolator's service
// starts with.
func commandNofile() *unix.Rlimit {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur != lim.Max-1 || lim.Max <= defaultNofile+1 {
		return nil
	}
	return &unix.Rlimit{Cur: defaultNofile, Max: lim.Max}
}

// closeMaps closes the maps pipe of a start that does not go on to fork.
func closeMaps(p *execPlan) {
	if p.userns {
		unix.Close(int(p.mapR))
		unix.Close(int(p.mapW))
	}
}

// readFull reads b from fd to its end or EOF, and returns how much it read.
func readFull(fd int, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Read(fd, b[n:])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return n, err
		case m == 0:
			return n, nil
		}
		n += m
	}
	return n, nil
}

// err is the failure r reports, as confineThread and installSeccomp name
// theirs.
func (r childReport) err(path string) error {
	errno := syscall.Errno(r[2])
	switch r[0] {
	case childExec:
		return &stepError{class: classExec, step: "exec " + path, err: errno}
	case childSeccomp:
		return setupErr(stepSeccomp, fmt.Errorf("seccomp: %w", errno))
	case childDropBound:
		return setupErr(fmt.Sprintf(stepDropBound, r[1]), errno)
	case childStdio:
		return setupErr(fmt.Sprintf("make descriptor %d the command's stdio", r[1]), errno)
	}
	steps := map[uint32]string{
		childMaps:       "wait for the user namespace's maps",
		childSetsid:     "setsid",
		childSetgroups:  "clear supplementary groups",
		childSetgid:     "setgid 0 in the user namespace",
		childSetuid:     "setuid 0 in the user namespace",
		childNofile:     "give back the open files limit",
		childCapset:     stepCapset,
		childAmbient:    stepAmbient,
		childNoNewPrivs: stepNoNewPrivs,
	}
	step, ok := steps[r[0]]
	if !ok {
		step = fmt.Sprintf("step %d of the command's start", r[0])
	}
	return setupErr(step, errno)
}

// waitPid reaps the command's child, which failed before its execve.
func waitPid(pid int) {
	for {
		_, err := unix.Wait4(pid, nil, 0, nil)
		if !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// CheckUserNS checks, once at the isolator's start, that jobs can run in
// the user namespace u: a valid range that no host user, group or
// /etc/subuid, /etc/subgid range shares, and a kernel that lets the
// isolator create such a namespace, write its maps and install the job's
// seccomp filter in it.
func CheckUserNS(u UserNS) error {
	if err := u.Validate(); err != nil {
		return err
	}
	if err := checkHostIDs(u, "/etc"); err != nil {
		return err
	}
	exe, err := sealedInit()
	if err != nil {
		return err
	}
	var out bytes.Buffer
	cmd := &exec.Cmd{
		Path:   ExecPath(exe),
		Args:   []string{probeArg0},
		Env:    initEnv,
		Stdout: &out, Stderr: &out,
		ExtraFiles:  WithExe(nil, exe), // fdProbeExe
		SysProcAttr: &syscall.SysProcAttr{},
	}
	u.apply(cmd.SysProcAttr)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("user namespace (uid %d, gid %d, %d ids): the kernel refused it: %w %q",
			u.HostUID, u.HostGID, u.Size, err, strings.TrimSpace(out.String()))
	}
	return nil
}

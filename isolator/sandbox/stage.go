package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The job's command is not started by the init directly but through the
// exec stage: the init's binary again (/proc/self/exe, the sealed copy),
// forked from the init's confined thread (capabilities and no_new_privs
// set, confine.go) into the job's user namespace (CLONE_NEWUSER, with the
// maps the init writes). The stage installs the seccomp filter on itself
// and execs the command:
//
//	init (host userns)                 exec stage (job's userns, uid 0)
//	──────────────────                 ────────────────────────────────
//	pipe(report); fork+exec /proc/self/exe
//	  [CLONE_NEWUSER; write uid_map,
//	   gid_map before the child runs] ──▶ report fd close-on-exec,
//	                                      seccomp filter, execve(command)
//	read report: EOF = the command ◀──── ok: the command runs (report closed)
//	  runs; a message = it failed   ◀─── failed: {"type":"error",...}, exit 127
//
// The filter cannot be installed in the init: it refuses CLONE_NEWUSER,
// which the init needs to start the command. With no user namespace the
// stage runs just the same, without CLONE_NEWUSER.

// execArg0 is argv[0] of a job's exec stage: argv is execArg0, the
// command's path, then the command's own argv.
const execArg0 = "joblet-sandbox-exec"

// probeArg0 is argv[0] of CheckUserNS's probe.
const probeArg0 = "joblet-sandbox-probe"

// fdProbeExe is the probe's inherited copy of its own executable (WithExe).
const fdProbeExe = 3

// fdReport is the exec stage's write end of its report pipe.
const fdReport = 3

// execStage is the exec stage's main; it never returns.
func execStage() {
	// The filter belongs to this thread, and execve keeps this thread's.
	runtime.LockOSThread()
	report := os.NewFile(fdReport, "exec-report")
	fail := func(err error) {
		_ = json.NewEncoder(report).Encode(errorMessage(err))
		os.Exit(127)
	}
	if _, err := unix.FcntlInt(fdReport, unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		fail(setupErr("mark the report close-on-exec", err))
	}
	// Again: a new user namespace starts with every capability, bounding
	// set included.
	if err := confineThread(); err != nil {
		fail(err)
	}
	if err := installSeccomp(); err != nil {
		fail(setupErr("install seccomp filter", err))
	}
	path := os.Args[1]
	err := syscall.Exec(path, os.Args[2:], os.Environ())
	fail(&stepError{class: classExec, step: "exec " + path, err: err})
}

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

// startStage starts the command at path through the exec stage, in the
// job's user namespace if it has one, and returns its pid once the command
// runs. It forks with syscall.ForkExec, not os/exec: os.StartProcess first
// probes, once per process, that pidfds work (a pidfd_open, a waitid and a
// throwaway vfork child), which the init, a new process per job, would pay
// on every job's path; the init needs no pidfd (it reaps with wait4).
func startStage(spec *initSpec, path string, stdout, stderr *os.File) (int, error) {
	repR, repW, err := os.Pipe()
	if err != nil {
		return 0, setupErr("report pipe", err)
	}
	defer repR.Close()
	// Stdin: /dev/null of the new root.
	null, err := os.Open(os.DevNull)
	if err != nil {
		repW.Close()
		return 0, setupErr("open "+os.DevNull, err)
	}
	// Setsid: a session of its own and no controlling terminal.
	attr := &syscall.SysProcAttr{Setsid: true}
	if u := spec.UserNS; u != nil {
		u.apply(attr)
	}
	pid, err := syscall.ForkExec("/proc/self/exe", // the sealed copy the init runs from
		append([]string{execArg0, path}, spec.Args...),
		&syscall.ProcAttr{
			Env:   append([]string{}, spec.Env...),
			Files: []uintptr{null.Fd(), stdout.Fd(), stderr.Fd(), repW.Fd()}, // fdReport
			Sys:   attr,
		})
	null.Close()
	repW.Close()
	if err != nil {
		return 0, setupErr("start the exec stage", err)
	}
	var m message
	switch err := json.NewDecoder(repR).Decode(&m); {
	case errors.Is(err, io.EOF):
		return pid, nil // closed by a successful execve
	case err != nil:
		waitPid(pid)
		return 0, setupErr("read the exec stage's report", err)
	}
	waitPid(pid)
	var cause error = syscall.Errno(m.Errno)
	if m.Errno == 0 {
		cause = errors.New(m.Msg)
	}
	return 0, &stepError{class: m.Class, step: m.Step, err: cause}
}

// waitPid reaps the exec stage pid, which failed before its execve.
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

package shimproc

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/isolator/shim/wire"
	"github.com/joblet-dev/joblet/proto/logdapi/handover"
)

// A shim lives as long as its job, and as a Go program it holds ~3.6 MiB
// of resident memory the whole time (its runtime, and the pages of its
// binary it touched to start the job): most of a running job's cost. Yet
// while the job runs it only waits, for the init's report on the message
// pipe and for logd's answer on the hand-over connection. So once a job
// has run for parkAfter, its shim parks: it replaces itself (an exec, same
// pid, same children, same descriptors) with the reaper binary's park mode
// (sandbox/reaper/reaper.c), a few pages of C that wait on those two
// descriptors and, as soon as either is readable or hung up, exec this
// binary again, which takes the job back (resume) and ends it as before.
//
// A short job (the common /bin/true of a benchmark, a build step) ends
// before parkAfter and never parks; a long one pays a second Go start
// (~2.5 ms of CPU) at its end, for its whole life at a few KiB. Without a
// reaper binary (none installed), shims never park.

// parkAfter is how long a job runs before its shim parks: long enough
// that a job ending soon after (or a short one on an overloaded machine:
// 1000 /bin/true at concurrency 32 on 2 CPUs take ~330 ms each, p99 ~650
// ms, from RunJob to the end recorded) does not pay the second Go start
// for nothing, short against what a long job is parked for.
const parkAfter = 2 * time.Second

// parkedEnv names, in the environment of the parked shim and of the shim
// it execs, the state of the job taken back (parkedJob, as JSON).
const parkedEnv = "JOBLET_SHIM_PARKED"

// parkedJob is what a shim needs of its job once the job is started.
type parkedJob struct {
	ID            string            `json:"id"`
	Cgroup        map[string]string `json:"cgroup,omitempty"`
	LogdSocket    string            `json:"logd_socket"`
	Result        string            `json:"result"`
	OutputTimeout time.Duration     `json:"output_timeout"`
	// Set by park: the init, and the descriptors kept across the execs.
	InitPID int  `json:"init_pid"`
	Moved   bool `json:"moved"`
	Status  int  `json:"status_fd"`
	Sync    int  `json:"sync_fd"`
	Conn    int  `json:"conn_fd"`
	Stdout  int  `json:"stdout_fd"`
	Stderr  int  `json:"stderr_fd"`
	Reaper  int  `json:"reaper_fd"` // the sealed reaper, to park again
}

// parkWhileRunning parks the shim once its job has run for parkAfter, when
// the init has not reported and the forwarder waits for logd's answer; it
// returns once the init has reported, or the job cannot be parked any
// more (logd answered: the output is all in), or a park failed.
func parkWhileRunning(spec parkedJob, statusOut *os.File, p *sandbox.Process, fw *forwarder) {
	reaper := sandbox.ReaperFile()
	if reaper == nil {
		return
	}
	for {
		pk, ok := p.Park()
		if !ok {
			return
		}
		if readable(pk.Sync, parkAfter) {
			return // the init reported (or went away): Wait is next
		}
		select {
		case <-fw.done:
			return // logd has the whole output: nothing left to wait for there
		default:
		}
		c, ok := fw.hold()
		if !ok {
			continue // the hand-over is not taken yet: logd restarting
		}
		// Back from park only when the exec failed (the shim has no log:
		// its stderr is /dev/null): the job goes on under Go.
		_ = park(spec, statusOut, pk, p.Moved(), c, fw, reaper)
		fw.unhold(c)
		return
	}
}

// park execs the reaper binary's park mode with everything the shim
// takes the job back with; it returns only if that failed.
func park(spec parkedJob, statusOut *os.File, pk sandbox.Parked, moved bool, c *handover.Conn,
	fw *forwarder, reaper *os.File) error {
	exe, err := unix.Open("/proc/self/exe", unix.O_RDONLY, 0) // inherited: no O_CLOEXEC
	if err != nil {
		return fmt.Errorf("open own binary: %w", err)
	}
	defer unix.Close(exe)
	conn, err := c.File()
	if err != nil {
		return err
	}
	defer conn.Close()
	st := spec
	st.InitPID, st.Moved = pk.PID, moved
	kept := []struct {
		f  *os.File
		at *int
	}{{statusOut, &st.Status}, {pk.Sync, &st.Sync}, {conn, &st.Conn}, {fw.pipes[0].File, &st.Stdout}, {fw.pipes[1].File, &st.Stderr}}
	var fds []int
	for _, k := range kept {
		fd, err := rawFd(k.f)
		if err != nil {
			return err
		}
		*k.at = fd
		fds = append(fds, fd)
	}
	reaperFd, err := rawFd(reaper)
	if err != nil {
		return err
	}
	st.Reaper = reaperFd
	fds = append(fds, reaperFd)
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	for _, fd := range fds {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("keep descriptor %d: %w", fd, err)
		}
	}
	defer func() {
		for _, fd := range fds {
			_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		}
	}()
	env := append(withoutParked(os.Environ()), parkedEnv+"="+string(b))
	argv := []string{procArg0, "park", strconv.Itoa(st.Sync), strconv.Itoa(st.Conn), strconv.Itoa(exe)}
	return syscall.Exec("/proc/self/fd/"+strconv.Itoa(reaperFd), argv, env)
}

// procArg0 is the parked shim's argv[0], which the reaper binary takes as
// its park mode.
const procArg0 = "joblet-shim"

func withoutParked(env []string) []string {
	out := env[:0:0]
	for _, e := range env {
		if len(e) < len(parkedEnv)+1 || e[:len(parkedEnv)+1] != parkedEnv+"=" {
			out = append(out, e)
		}
	}
	return out
}

// parkedState is the job a parked shim exec'd this one to take back.
func parkedState() (parkedJob, bool) {
	v, ok := os.LookupEnv(parkedEnv)
	if !ok {
		return parkedJob{}, false
	}
	var st parkedJob
	if err := json.Unmarshal([]byte(v), &st); err != nil {
		fmt.Fprintf(os.Stderr, "joblet-shim: bad %s: %v\n", parkedEnv, err)
		os.Exit(2)
	}
	return st, true
}

// resume takes back the job a parked shim passed on, and ends it as run
// does; the shim's exit code.
func resume(st parkedJob) int {
	_ = os.Unsetenv(parkedEnv)
	for _, fd := range []int{st.Status, st.Sync, st.Conn, st.Stdout, st.Stderr} {
		_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
	}
	// Kept to park again (after a logd restart woke the shim); without it
	// the shim stays Go until the job ends.
	_ = sandbox.InheritReaper(os.NewFile(uintptr(st.Reaper), "shim-reaper"))
	statusOut := os.NewFile(uintptr(st.Status), "shim-status")
	p, err := sandbox.Resume(st.ID, sandbox.Parked{PID: st.InitPID, Sync: os.NewFile(uintptr(st.Sync), "init-sync")}, st.Moved)
	if err != nil {
		report(statusOut, wire.ErrorMessage(fmt.Errorf("shim: resume: %w", err)))
		return 1
	}
	connFile := os.NewFile(uintptr(st.Conn), "logd-pipes")
	c, err := handover.Resume(connFile)
	connFile.Close() // Resume holds a duplicate
	stdout, stderr := os.NewFile(uintptr(st.Stdout), "stdout"), os.NewFile(uintptr(st.Stderr), "stderr")
	var fw *forwarder
	if err != nil {
		fw = forward(st.LogdSocket, st.ID, stdout, stderr) // hand the pipes over again
	} else {
		fw = resumeForward(st.LogdSocket, st.ID, stdout, stderr, c)
	}
	var cg *jobCgroup
	if len(st.Cgroup) > 0 {
		if cg, err = openJobCgroup(st.ID, st.Cgroup); err != nil {
			cg = nil // the isolator reads the counters itself
		}
	}
	return finish(st, statusOut, p, fw, cg)
}

// readable waits, for at most d, until f can be read or fails, without
// reading any of it; it reports whether it can. The wait is the runtime's
// poller's (a deadline on f), not a thread blocked in poll.
func readable(f *os.File, d time.Duration) bool {
	rc, err := f.SyscallConn()
	if err != nil || f.SetReadDeadline(time.Now().Add(d)) != nil {
		return true // not pollable: never parks
	}
	defer f.SetReadDeadline(time.Time{})
	err = rc.Read(readyToRead)
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

// readyToRead is a syscall.RawConn Read callback that reads nothing: true
// once fd can be read, or is hung up or failed; false has the runtime's
// poller wait (until a deadline, if set).
func readyToRead(fd uintptr) bool {
	n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
	return n != 0 || err != nil && !errors.Is(err, unix.EINTR)
}

// rawFd is f's descriptor number, without File.Fd (which would switch it
// to blocking mode).
func rawFd(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return 0, err
	}
	return fd, nil
}

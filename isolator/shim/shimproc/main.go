// Package shimproc is a job's shim process itself: it starts the job in its
// sandbox, hands the job's output pipes to logd, waits for the job and
// records its Result (package shim is the isolator's side, and describes
// the exchange). It is the main of the joblet-shim binary, and of the
// isolator's own binary when that one is not installed beside it.
//
// A shim runs for the whole life of its job, one per running job, so what
// it links is resident memory per job: this package links the sandbox, the
// wire types and a client of logd's pipe hand-over that speaks it without
// gRPC or protobuf, and reads the job's cgroup counters itself
// (cgroup.go says why). Nothing else.
package shimproc

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/isolator/sandbox"
	"github.com/joblet-dev/joblet/isolator/shim/wire"
)

// memoryLimit is the shim's soft Go heap limit: logd reads the job's
// output from the pipes itself, so the shim's heap holds only its own few
// structures.
const memoryLimit = 4 << 20

// procName is the shim's name in ps and top, NUL-terminated for prctl.
var procName = []byte(wire.Arg0 + "\x00")

// IsShim reports whether this process was started by the isolator as a
// job's shim.
func IsShim() bool {
	return len(os.Args) == 1 && os.Args[0] == wire.Arg0
}

// Main is a job's shim: it runs the job, forwards its output and records
// its result. It never returns.
func Main() {
	debug.SetMemoryLimit(memoryLimit)
	// Started from /proc/self/fd/N, its name would be N: name it for ps.
	_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&procName[0])), 0, 0, 0)
	// A terminal's or a session's signals are not for the shim: the job is
	// stopped through its cgroup, and the shim ends with it.
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	if st, ok := parkedState(); ok {
		os.Exit(resume(st)) // back from parking (park.go)
	}
	sandbox.CloseInheritedExe(wire.FDShimExe)
	// The status pipe's EOF tells the isolator the job's result is written
	// (see run): no process the shim starts may hold it open.
	_, _ = unix.FcntlInt(wire.FDStatus, unix.F_SETFD, unix.FD_CLOEXEC)
	if slices.Contains(os.Environ(), wire.InitFDEnv) {
		// The isolator's sealed init binary: the job's init runs from it.
		if err := sandbox.InheritInit(os.NewFile(wire.FDInit, "shim-init")); err != nil {
			report(os.NewFile(wire.FDStatus, "shim-status"), wire.ErrorMessage(fmt.Errorf("shim: %w", err)))
			os.Exit(1)
		}
	}
	if slices.Contains(os.Environ(), wire.ReaperFDEnv) {
		// The sealed reaper the job's init hands over to.
		if err := sandbox.InheritReaper(os.NewFile(wire.FDReaper, "shim-reaper")); err != nil {
			report(os.NewFile(wire.FDStatus, "shim-status"), wire.ErrorMessage(fmt.Errorf("shim: %w", err)))
			os.Exit(1)
		}
	}
	// Before the spec is read: the spawner joins the spare cgroup while the
	// shim waits.
	sp := spawnerFromEnv()
	probePidfd()
	statusOut := os.NewFile(wire.FDStatus, "shim-status")
	var pre *preforked
	if sp != nil {
		// The job's init is cloned ahead, in the spare, and waits at its
		// gate; the isolator learns it is there (and its pid, to wait for
		// its exit before removing the spare should the shim be killed).
		pre = prefork(sp)
		send(statusOut, wire.Message{Type: wire.MsgWaiting, PID: pre.pid()})
	}
	specIn := os.NewFile(wire.FDSpec, "shim-spec")
	var spec wire.Spec
	err := json.NewDecoder(specIn).Decode(&spec)
	specIn.Close()
	if err != nil {
		// No job (the isolator closed the pipe): the preforked init exits
		// at its gate and is reaped before the shim goes, so nothing of it
		// is left in the spare.
		pre.close()
		report(statusOut, wire.ErrorMessage(fmt.Errorf("shim: read spec: %w", err)))
		os.Exit(1)
	}
	os.Exit(run(spec, statusOut, sp, pre))
}

// probePidfd makes os/exec's one-time check that pidfds work (a
// pidfd_open, a waitid and a throwaway vfork child, made by the first
// os.StartProcess or os.FindProcess of a process) now, while the shim waits
// for its spec: else the job's start pays it, at the init's clone, and from
// a spare the probe's child is born in the job's cgroup. This goroutine
// never runs on the spawner's thread (locked to its own), so the probe's
// child is born outside the spare too.
func probePidfd() {
	if p, err := os.FindProcess(os.Getpid()); err == nil {
		_ = p.Release()
	}
}

// report writes m to the isolator and closes the pipe: it is the only
// message (an error), and the isolator may be gone by the time the job
// ends.
func report(w *os.File, m wire.Message) {
	send(w, m)
	w.Close()
}

// send writes m to the isolator.
func send(w *os.File, m wire.Message) {
	_ = json.NewEncoder(w).Encode(m) // a write error means the isolator died; the job goes on
}

func run(spec wire.Spec, statusOut *os.File, sp *spawner, pre *preforked) int {
	timeout := spec.OutputTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	p, fw, cg, err := start(spec, sp, pre)
	if sp != nil {
		// Before anything is reported: once the isolator knows, it may
		// signal, kill or remove the job's cgroup, and no thread of the
		// shim may be in it then.
		if rerr := sp.release(); rerr != nil && err == nil {
			p.Kill()
			_, _ = p.Wait()
			err = rerr
		}
	}
	if err != nil {
		report(statusOut, wire.ErrorMessage(err))
		if fw != nil {
			// The log exists and is closed, so a follower sees its end.
			fw.await(timeout)
		}
		return 1
	}
	// The pipe stays open until the result is written: its EOF is how the
	// isolator learns the job ended, without waiting for this process's
	// exit (the Go runtime's teardown). Were the isolator gone, nothing
	// reads it, and closing it is harmless.
	send(statusOut, wire.Message{Type: wire.MsgStarted, PID: p.Pid(), Moved: p.Moved()})
	return finish(parkedJob{ID: spec.ID, Cgroup: spec.Cgroup, LogdSocket: spec.LogdSocket,
		Result: spec.Result, OutputTimeout: timeout}, statusOut, p, fw, cg)
}

// finish waits for the started job's end, parked while it runs long
// (park.go), and records its result; the shim's exit code.
func finish(spec parkedJob, statusOut *os.File, p *sandbox.Process, fw *forwarder, cg *jobCgroup) int {
	timeout := spec.OutputTimeout
	parkWhileRunning(spec, statusOut, p, fw)
	res := wire.Result{}
	r, werr := p.Wait()
	// Nothing of the job runs any more (the init reported once every other
	// process of its namespace was reaped, and is exiting; were it lost
	// track of, the isolator kills what is left in the job's cgroup): the
	// isolator releases what the job held while logd completes the log.
	send(statusOut, wire.Message{Type: wire.MsgExited})
	res.ExitCode, res.Signal = r.ExitCode, r.Signal
	if werr != nil {
		res.Error = werr.Error()
	}
	if cg != nil {
		if u, err := cg.stats(); err == nil {
			res.Usage = &u
		} // else the isolator reads the cgroup itself, if it still exists
	}
	res.OutputComplete = fw.await(timeout) == nil
	res.EndedAt = time.Now().UTC()
	// The isolator records the end from the message, while the file is
	// written for an isolator that is not there (restarting): the record's
	// fdatasync and the file's writing overlap. The isolator removes the
	// file only once this process has exited.
	send(statusOut, wire.Message{Type: wire.MsgEnded, Result: &res})
	code := 0
	if err := wire.WriteResult(spec.Result, res); err != nil {
		code = 2 // an isolator restarting meanwhile records the job as lost
	}
	statusOut.Close()
	// The isolator has what it needs; the init may still be in the
	// kernel's teardown of its namespaces. It is reaped before the shim
	// exits, not left to the host's init as an orphan: when the shim is
	// gone, nothing of its job is left (the isolator's Release waits for
	// the shim's exit).
	select {
	case <-p.Reaped():
	case <-time.After(reapTimeout):
	}
	return code
}

// reapTimeout bounds the wait for the init's reaping after the result: its
// teardown takes milliseconds (RCU grace periods for its mount and network
// namespaces).
const reapTimeout = 5 * time.Second

// preforked is a job's init cloned ahead by a waiting shim, with the
// output pipes it was given; nil when there is none.
type preforked struct {
	forked                 *sandbox.Forked
	outR, outW, errR, errW *os.File
}

// prefork makes the job's output pipes and clones the job's init on the
// spawner's thread, in the spare: it waits at its gate until the job's
// spec (see start). It returns nil when either cannot be made: the job's
// init is then cloned at the job's start, as without a spare.
func prefork(sp *spawner) *preforked {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil
	}
	f, err := sandbox.Prefork(outW, errW, sp.do)
	if err != nil {
		for _, f := range []*os.File{outR, outW, errR, errW} {
			f.Close()
		}
		return nil
	}
	return &preforked{forked: f, outR: outR, outW: outW, errR: errR, errW: errW}
}

// pid is the preforked init's, 0 when there is none.
func (p *preforked) pid() int {
	if p == nil {
		return 0
	}
	return p.forked.Pid()
}

// close makes the preforked init exit at its gate, having done nothing,
// and reaps it. The output pipes stay for a job started anew.
func (p *preforked) close() {
	if p != nil {
		_ = p.forked.Close()
	}
}

// outputPipes returns the job's output pipes: the preforked init's, or
// new ones.
func (p *preforked) outputPipes() (outR, outW, errR, errW *os.File, err error) {
	if p != nil {
		return p.outR, p.outW, p.errR, p.errW, nil
	}
	outR, outW, err = os.Pipe()
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("shim: stdout pipe: %w", err)
	}
	errR, errW, err = os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, nil, nil, nil, fmt.Errorf("shim: stderr pipe: %w", err)
	}
	return outR, outW, errR, errW, nil
}

// start starts the job in its sandbox, in its cgroup (nil: none), then
// hands the job's output pipes to logd. It starts it through the init
// preforked in the spare when the job has a cgroup (which the spare became, or which the
// init is moved into; on a netd network the init joins netd's namespace
// at its gate), else through an init cloned now, from the spawner's thread
// when there is one. On a start error the forwarder (if made) still runs,
// to close the job's log.
func start(spec wire.Spec, sp *spawner, pre *preforked) (*sandbox.Process, *forwarder, *jobCgroup, error) {
	var cg sandbox.Cgroup
	var job *jobCgroup
	if len(spec.Cgroup) > 0 {
		j, err := openJobCgroup(spec.ID, spec.Cgroup)
		if err != nil {
			pre.close()
			return nil, nil, nil, err
		}
		cg, job = j, j
	}
	usePrefork := pre != nil && job != nil && !pre.forked.Exited()
	if !usePrefork {
		// A job without a cgroup (the preforked init would stay in the
		// spare, which is to be removed), or an init killed while it
		// waited: the job gets an init cloned for it.
		pre.close()
	}
	outR, outW, errR, errW, err := pre.outputPipes()
	if err != nil {
		return nil, nil, nil, err
	}
	sb := sandbox.Spec{
		ID: spec.ID, Hostname: spec.Hostname, Args: spec.Args, Env: spec.Env,
		RootDir: spec.RootDir, WorkDir: spec.WorkDir,
		Cgroup:    cg,
		NetnsPath: spec.NetnsPath, ResolvConf: spec.ResolvConf, Hosts: spec.Hosts,
		Work: spec.Work, Tmp: spec.Tmp,
		UserNS: spec.UserNS,
	}
	var p *sandbox.Process
	if usePrefork {
		// The spawner's thread leaves the job's cgroup before the gate
		// opens: it was there for the clone and no more.
		if err = sp.release(); err == nil {
			p, err = pre.forked.Start(sb)
		} else {
			pre.close()
		}
	} else {
		sb.Stdout, sb.Stderr = outW, errW
		if sp != nil && job != nil {
			sb.Spawn = sp.spawn
		}
		p, err = sandbox.Start(sb)
	}
	// The job holds its own copies; ours must go for logd to see EOF.
	outW.Close()
	errW.Close()
	// Handed over once the job runs, not before its gate: the hand-over
	// (a connection to logd, the pipes passed, logd's answer: 0.3-1 ms)
	// no longer delays the job's start, whose output waits in the pipes
	// meanwhile; and not on the job's first output, so that a short job's
	// log is open by the time it ends. After a failed start too: the log
	// is made and closed, so a follower sees its end.
	fw := forward(spec.LogdSocket, spec.ID, outR, errR)
	if err != nil {
		return nil, fw, nil, err
	}
	return p, fw, job, nil
}

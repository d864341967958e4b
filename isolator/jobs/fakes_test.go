package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/logdapi"
)

// execRunner runs the command directly, in a process group of its own so
// that Terminate and Kill reach all its processes, like the sandbox does
// for a job's PID namespace.
type execRunner struct{}

type execProc struct{ cmd *exec.Cmd }

func (execRunner) Start(s Spec) (Proc, error) {
	cmd := exec.Command(s.Args[0], s.Args[1:]...)
	cmd.Env, cmd.Dir = s.Env, s.WorkDir
	cmd.Stdout, cmd.Stderr = s.Stdout, s.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if _, err := s.Cgroup.UseCgroupFD(cmd.SysProcAttr); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, errdefs.Errorf(errdefs.ErrNotFound, "command %q not found", s.Args[0])
		}
		return nil, err
	}
	if err := s.Cgroup.Apply(cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	return execProc{cmd}, nil
}

func (p execProc) Pid() int { return p.cmd.Process.Pid }

func (p execProc) Wait() (Result, error) {
	err := p.cmd.Wait()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return Result{}, err
	}
	ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return Result{ExitCode: 128 + int(ws.Signal()), Signal: int(ws.Signal())}, nil
	}
	return Result{ExitCode: ws.ExitStatus()}, nil
}

func (p execProc) Terminate() error { return syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM) }
func (p execProc) Kill() error      { return syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) }

// fakeCgroups records what the registry does with job cgroups. A fake
// cgroup is the process group of the job's first process: Signal and
// KillAll signal that group.
type fakeCgroups struct {
	mu        sync.Mutex
	createErr error                  // returned by Create
	next      Usage                  // what Stats reports for cgroups created from now on
	usage     map[string]Usage       // what Stats reports, by job id
	created   map[string]*fakeCgroup // by job id
	limits    map[string]*jobletv1.Limits
	devices   []string        // the ioDevice of each Create
	events    []string        // "create 1", "apply 1", "stats 1", "running 1", "destroy 1", "signal 1 terminated", "killall 1"
	left      map[string]bool // cgroups an earlier run left, for Exists
	// stray and killAll are given to the cgroups created from now on (see
	// fakeCgroup).
	stray   func() ([]int, error)
	killAll func()
}

func newFakeCgroups() *fakeCgroups {
	return &fakeCgroups{usage: map[string]Usage{}, created: map[string]*fakeCgroup{}, limits: map[string]*jobletv1.Limits{}}
}

func (c *fakeCgroups) Create(id string, l *jobletv1.Limits, ioDevice string) (Cgroup, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.createErr != nil {
		return nil, c.createErr
	}
	if _, err := os.Stat(ioDevice); err != nil {
		return nil, fmt.Errorf("cgroup created before the workspace: %w", err)
	}
	cg := &fakeCgroup{id: id, parent: c, stray: c.stray, killAll: c.killAll}
	c.created[id], c.limits[id], c.usage[id] = cg, proto.Clone(l).(*jobletv1.Limits), c.next
	c.devices = append(c.devices, ioDevice)
	c.events = append(c.events, "create "+id)
	return cg, nil
}

// Exists implements CgroupChecker: a cgroup made and not destroyed, or one
// left by "a previous run" (left).
func (c *fakeCgroups) Exists(id string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.created[id] != nil || c.left[id], nil
}

// setNext sets what Stats reports for the cgroups created from now on.
func (c *fakeCgroups) setNext(u Usage) {
	c.mu.Lock()
	c.next = u
	c.mu.Unlock()
}

func (c *fakeCgroups) event(e string) {
	c.mu.Lock()
	c.events = append(c.events, e)
	c.mu.Unlock()
}

// eventsOf returns the events of job id, without the id.
func (c *fakeCgroups) eventsOf(id string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.events {
		verb, rest, _ := strings.Cut(e, " ")
		job, arg, _ := strings.Cut(rest, " ")
		if job == id {
			out = append(out, strings.TrimSpace(verb+" "+arg))
		}
	}
	return out
}

type fakeCgroup struct {
	id     string
	parent *fakeCgroups
	mu     sync.Mutex
	pgid   int
	// stray, when set, is what Running reports, and killAll runs in
	// KillAll.
	stray   func() ([]int, error)
	killAll func()
}

func (g *fakeCgroup) UseCgroupFD(*syscall.SysProcAttr) (bool, error) { return false, nil }

func (g *fakeCgroup) Apply(pid int) error {
	g.mu.Lock()
	g.pgid = pid
	g.mu.Unlock()
	g.parent.event("apply " + g.id)
	return nil
}

func (g *fakeCgroup) kill(sig syscall.Signal) error {
	g.mu.Lock()
	pgid := g.pgid
	g.mu.Unlock()
	if pgid <= 0 { // no process was ever put in: kill(0) would hit the test itself
		return nil
	}
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

func (g *fakeCgroup) Signal(sig syscall.Signal) error {
	g.parent.event("signal " + g.id + " " + sig.String())
	return g.kill(sig)
}

func (g *fakeCgroup) KillAll() error {
	g.parent.event("killall " + g.id)
	g.mu.Lock()
	k := g.killAll
	g.mu.Unlock()
	if k != nil {
		k()
	}
	if err := g.kill(syscall.SIGKILL); err != nil {
		return err
	}
	// Like the real one, until none is left. A zombie counts as gone, as in
	// a real cgroup, which a process leaves when it exits, not when it is
	// reaped: an orphan's zombie waits for PID 1, which on some machines
	// reaps only every few seconds.
	g.mu.Lock()
	pgid := g.pgid
	g.mu.Unlock()
	for deadline := time.Now().Add(5 * time.Second); pgid > 0 && len(liveInGroup(pgid)) > 0; {
		if time.Now().After(deadline) {
			return fmt.Errorf("process group %d survives SIGKILL", pgid)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// Running reports the job's process group while it has a process, or
// what stray says.
func (g *fakeCgroup) Running() ([]int, error) {
	g.mu.Lock()
	pgid, stray := g.pgid, g.stray
	g.mu.Unlock()
	g.parent.event("running " + g.id)
	if stray != nil {
		return stray()
	}
	if pgid > 0 {
		return liveInGroup(pgid), nil
	}
	return nil, nil
}

// liveInGroup lists the processes of process group pgid that are not
// zombies.
func liveInGroup(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// After the command's name: state, ppid, pgrp.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" || f[2] != strconv.Itoa(pgid) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

func (g *fakeCgroup) Stats() (Usage, error) {
	g.parent.event("stats " + g.id)
	g.parent.mu.Lock()
	defer g.parent.mu.Unlock()
	return g.parent.usage[g.id], nil
}

func (g *fakeCgroup) Destroy() error {
	g.parent.event("destroy " + g.id)
	return g.kill(syscall.SIGKILL)
}

// memLogd keeps every job's log in memory, deduplicating resent bytes like
// logd does; while down is set, every Append fails.
type memLogd struct {
	mu     sync.Mutex
	down   bool
	logs   map[string]*bytes.Buffer // both streams
	stdout map[string]*bytes.Buffer
	closed map[string]bool
}

func newMemLogd() *memLogd {
	return &memLogd{logs: map[string]*bytes.Buffer{}, stdout: map[string]*bytes.Buffer{}, closed: map[string]bool{}}
}

func (l *memLogd) Append(_ context.Context, id string, recs []logdapi.Record, eof bool) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return 0, errdefs.Errorf(errdefs.ErrUnavailable, "logd is down")
	}
	b, out := l.logs[id], l.stdout[id]
	if b == nil {
		b, out = &bytes.Buffer{}, &bytes.Buffer{}
		l.logs[id], l.stdout[id] = b, out
	}
	for _, r := range recs {
		size := int64(b.Len())
		if r.Offset > size {
			return size, errdefs.Errorf(errdefs.ErrFailedPrecondition, "gap")
		}
		if skip := size - r.Offset; skip < int64(len(r.Data)) {
			b.Write(r.Data[skip:])
			if r.Stream == jobletv1.Stream_STREAM_STDOUT {
				out.Write(r.Data[skip:])
			}
		}
	}
	l.closed[id] = l.closed[id] || eof
	return int64(b.Len()), nil
}

func (l *memLogd) Read(context.Context, string, int64, bool, func(logdapi.Record) error) error {
	return errors.ErrUnsupported
}

func (l *memLogd) Stat(context.Context, string) (logdapi.Stat, error) {
	return logdapi.Stat{}, errors.ErrUnsupported
}

func (l *memLogd) setDown(down bool) {
	l.mu.Lock()
	l.down = down
	l.mu.Unlock()
}

// log returns job id's log (both streams) and whether it is closed.
func (l *memLogd) log(id string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.logs[id]; b != nil {
		return b.String(), l.closed[id]
	}
	return "", l.closed[id]
}

// stdoutOf returns what job id wrote to its stdout.
func (l *memLogd) stdoutOf(id string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.stdout[id]; b != nil {
		return b.String()
	}
	return ""
}

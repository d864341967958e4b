package jobs

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"sync"
	"syscall"

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
	if err := cmd.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, errdefs.Errorf(errdefs.ErrNotFound, "command %q not found", s.Args[0])
		}
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

package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/logdapi"
)

// drainBytes bounds what one turn of a pipe moves into the log, so that two
// streams take turns and followers are woken at least this often.
const drainBytes = 1 << 20

// While a job writes fast, a turn that finds less than gatherBytes in the
// pipe is followed by a pause of gatherWait before the next look, so that
// the pipe (1 MiB, grown by the shim) fills between turns instead of logd
// waking for every write. Without it, a job writing 8 KiB at a time (`head`,
// `cat`) cost 15–35k turns per GiB, each a wake-up, poll, FIONREAD, header
// write and splice, and each took the pipe's lock while the job wanted it.
// "Fast" is a turn that comes within gatherWait of the one before: a job's
// first output, and output that comes now and then, is stored at once, and
// only drains of jobs in full flow hold a thread in the pause. What a
// follower sees is at most gatherWait later.
const (
	gatherBytes = 256 << 10
	gatherWait  = 500 * time.Microsecond
)

// Drain implements logdapi.Drainer: each pipe's output goes from the pipe
// into the log file with splice(2), in the kernel, without passing through
// logd's memory. A frame's header is written before its data, so a logd
// killed in between leaves a frame cut short at the end of the file, whose
// bytes load keeps (the rest is still in the pipe). Drains of one log run
// one at a time; a second waits for the first to let go of the pipes.
func (s *Store) Drain(ctx context.Context, jobID string, pipes []logdapi.Pipe) (int64, error) {
	if err := validID(jobID); err != nil {
		return 0, err
	}
	for _, p := range pipes {
		if _, ok := kindOf(p.Stream); !ok {
			return 0, errdefs.Errorf(errdefs.ErrInvalidArgument, "output pipe has unknown stream %d", p.Stream)
		}
	}
	l, _, err := s.get(jobID, true)
	if err != nil {
		return 0, err
	}
	defer s.release(jobID, l)
	select {
	case l.drain <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-s.done:
		return 0, errShutdown
	}
	defer func() { <-l.drain }()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // a store closing ends every drain
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	errs := make(chan error, len(pipes))
	for _, p := range pipes {
		go func() { errs <- l.drainPipe(ctx, jobID, p, s.max) }()
	}
	var first error
	for range pipes {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel() // the other pipe stops too; what is left stays in it
		}
	}
	if first != nil {
		if s.isClosed() {
			first = errShutdown
		}
		st, _ := l.stat()
		return st.Size, first
	}
	return l.append(jobID, nil, true, s.max)
}

func (s *Store) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// drainPipe moves p's output into the log until p is at end of file or ctx
// is done. It waits for output in the runtime's poller, which ctx's end
// interrupts through a past read deadline.
func (l *jobLog) drainPipe(ctx context.Context, jobID string, p logdapi.Pipe, limit int64) error {
	rc, err := p.File.SyscallConn()
	if err != nil {
		return fmt.Errorf("job output pipe: %w", err)
	}
	// A drain stopped before may have left its deadline on the same file.
	if err := p.File.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("job output pipe: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = p.File.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var (
		scratch []byte    // for output past the cap, which is read and counted
		last    time.Time // the end of the turn before
	)
	for {
		var (
			moved int
			eof   bool
			derr  error
		)
		err := rc.Read(func(fd uintptr) bool {
			moved, eof, derr = l.drainOnce(jobID, p.Stream, int(fd), limit, &scratch)
			return moved > 0 || eof || derr != nil
		})
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			return fmt.Errorf("wait for job output: %w", err)
		case derr != nil:
			return derr
		case eof:
			return nil
		}
		now := time.Now()
		if moved < gatherBytes && now.Sub(last) < gatherWait {
			gather()
			now = time.Now()
		}
		last = now
	}
}

// gather pauses the calling goroutine for gatherWait in a plain nanosleep,
// holding its thread. A runtime timer (time.Sleep) was tried first and cost
// more than it saved: timers this short keep the scheduler's idle threads
// polling (epoll_pwait 8.5k → 193k, context switches 24k → 115k per GiB).
// A thread blocked for under a millisecond keeps its P only while other Ps
// are idle; the runtime hands it on otherwise.
func gather() {
	ts := unix.NsecToTimespec(gatherWait.Nanoseconds())
	for {
		err := unix.Nanosleep(&ts, &ts)
		if !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// drainOnce moves what the pipe fd holds now, up to drainBytes, into the
// log. eof is true once the pipe is empty and every writer has closed it.
func (l *jobLog) drainOnce(jobID string, stream jobletv1.Stream, fd int, limit int64, scratch *[]byte) (moved int, eof bool, err error) {
	// The hang-up first, then the count: a pipe found empty after its last
	// writer left can get nothing more.
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if _, err := unix.Poll(pfd, 0); err != nil && !errors.Is(err, unix.EINTR) {
		return 0, false, fmt.Errorf("poll job output pipe: %w", err)
	}
	hup := pfd[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0
	n, err := unix.IoctlGetInt(fd, unix.TIOCINQ) // FIONREAD
	if err != nil {
		return 0, false, fmt.Errorf("job output pipe: %w", err)
	}
	if n == 0 {
		return 0, hup, nil
	}
	n = min(n, drainBytes)
	k, _ := kindOf(stream)

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return 0, false, l.err
	}
	if l.st.closed {
		return 0, false, errdefs.Errorf(errdefs.ErrFailedPrecondition, "output of job %s is closed", jobID)
	}
	if l.st.truncated || l.st.stored+int64(n) > limit {
		// At or past the cap: append keeps what fits, writes the notice
		// and counts the rest, so those bytes go through memory.
		if len(*scratch) == 0 {
			*scratch = make([]byte, maxData)
		}
		m, err := unix.Read(fd, (*scratch)[:min(n, maxData)])
		if err != nil || m <= 0 {
			return 0, false, readErr(err)
		}
		_, err = l.appendLocked(jobID, []logdapi.Record{{Stream: stream, Data: (*scratch)[:m], Offset: l.st.size}}, false, limit)
		return m, false, err
	}
	moved, err = l.spliceLocked(jobID, k, fd, n)
	return moved, false, err
}

func readErr(err error) error {
	if err == nil || errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		return nil // nothing after all: wait again
	}
	return fmt.Errorf("read job output pipe: %w", err)
}

// spliceLocked moves n bytes from the pipe fd to the end of the log as
// frames of at most maxData, each its header then its data spliced in
// behind it, and wakes the readers once. l.mu is held.
func (l *jobLog) spliceLocked(jobID string, k kind, fd, n int) (int, error) {
	next := l.st
	lastMark := int64(0)
	if len(l.index) > 0 {
		lastMark = l.index[len(l.index)-1].pos
	}
	wfd := int(l.f.Fd())
	var (
		marks []mark
		moved int
		err   error
	)
	for moved < n {
		want := min(n-moved, maxData)
		pos := next.end
		if err = writeHeader(l.f, k, want, pos); err != nil {
			break
		}
		var got int
		got, err = spliceAt(fd, wfd, pos+hdrLen, want)
		if got < want {
			// A full disk, or nothing after all: the header must say what
			// the frame holds, or go.
			if got == 0 {
				err = errors.Join(err, l.f.Truncate(pos))
				break
			}
			if herr := writeHeader(l.f, k, got, pos); herr != nil {
				err = errors.Join(err, herr, l.f.Truncate(pos))
				break
			}
		}
		if pos-lastMark >= indexEvery {
			marks = append(marks, mark{off: next.stored, pos: pos})
			lastMark = pos
		}
		next.end = pos + hdrLen + int64(got)
		next.size += int64(got)
		next.stored += int64(got)
		moved += got
		if err != nil || got < want {
			break
		}
	}
	if moved > 0 {
		l.written.Add(next.stored - l.st.stored)
		l.st = next
		l.index = append(l.index, marks...)
		l.broadcast()
	}
	if err != nil {
		return moved, fmt.Errorf("write log of job %s: %w", jobID, noSpace(err, jobID))
	}
	return moved, nil
}

// spliceAt moves up to n bytes from pipe rfd to file wfd at position off.
func spliceAt(rfd, wfd int, off int64, n int) (int, error) {
	got := 0
	for got < n {
		m, err := unix.Splice(rfd, nil, wfd, &off, n-got, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if m > 0 {
			got += int(m)
		}
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				err = nil
			}
			return got, err
		}
		if m == 0 {
			break
		}
	}
	return got, nil
}

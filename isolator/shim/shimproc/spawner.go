package shimproc

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/joblet-dev/joblet/isolator/shim/wire"
)

// On cgroup v1 a waiting shim may be given a spare cgroup (see shim.Spare):
// one thread of the shim, its spawner, joins it while the shim waits and
// clones the job's init there ahead (do: sandbox.Prefork), the isolator
// renames the spare to the job's cgroup at the job's start, and the thread
// ends before the init's gate opens (release); when no init could be
// preforked it clones the job's at its start instead (spawn). Either way
// it ends before the shim reports anything. The package shim's spawner.go says why it is
// safe.

// threadGoneTimeout bounds the wait for the spawner's thread to end; it
// takes microseconds.
const threadGoneTimeout = time.Second

// spawner is the thread of a shim that sits in its spare cgroup and clones
// the job's init.
type spawner struct {
	req  chan func() error // starts to run on the thread; closed to end it
	res  chan error
	gone chan struct{} // closed as the spawner's goroutine returns
	tid  int           // the thread's, set before gone is closed; 0: not in the spare
	once sync.Once
	err  error // of release
}

// spawnerFromEnv starts the spawner when the shim was given a spare, else
// returns nil.
func spawnerFromEnv() *spawner {
	v, ok := os.LookupEnv(wire.SpareEnv)
	if !ok {
		return nil
	}
	var dirs []string
	if err := json.Unmarshal([]byte(v), &dirs); err != nil {
		return nil // the init is then moved into the job's cgroup, as without a spare
	}
	s := &spawner{req: make(chan func() error), res: make(chan error, 1), gone: make(chan struct{})}
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			s.serve(dirs)
			return
		}
		// The main thread never ends (the runtime parks it instead), so
		// take another: while this goroutine holds the main thread, the
		// new one cannot be given it.
		taken := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(taken)
			s.serve(dirs)
		}()
		<-taken
		runtime.UnlockOSThread()
	}()
	return s
}

// serve joins the spare, then runs what it is given (the preforked init's
// clone, then at most the job's init's) until release. It returns still
// locked to its thread, so the Go runtime ends the thread.
func (s *spawner) serve(dirs []string) {
	defer close(s.gone)
	if tid := unix.Gettid(); tid == unix.Getpid() {
		// Cannot happen (see spawnerFromEnv); were it so, the main thread
		// would not end, so it joins nothing and is given back.
		defer runtime.UnlockOSThread()
	} else {
		s.tid = tid
		// An error leaves the thread where it is in the rest: the sandbox
		// checks where the init is born and moves it in where it is not.
		// "0" is the writing thread: the kernel moves it without the
		// global lock of every thread group's migrations, which a tid
		// takes, and whose first taker waits for an RCU grace period
		// (measured: 8 ms of the refill in D state under load), while
		// forks and exits elsewhere wait for the writer.
		for _, d := range dirs {
			if err := os.WriteFile(filepath.Join(d, "tasks"), []byte("0"), 0); err != nil {
				break
			}
		}
	}
	for start := range s.req {
		s.res <- start()
	}
}

// do runs start on the spawner's thread, which stays (the prefork). Not
// after release.
func (s *spawner) do(start func() error) error {
	s.req <- start
	return <-s.res
}

// spawn runs start (the init's clone) on the spawner's thread, then ends
// the thread (release). It is sandbox.Spec.Spawn, called once.
func (s *spawner) spawn(start func() error) error {
	err := s.do(start)
	if rerr := s.release(); err == nil {
		err = rerr
	}
	return err
}

// release ends the spawner's thread, after what it ran, and
// returns once the thread no longer exists, so that nothing of the shim is
// in the job's cgroup. It is idempotent.
func (s *spawner) release() error {
	s.once.Do(func() {
		close(s.req)
		<-s.gone
		if s.tid == 0 {
			return
		}
		task := "/proc/self/task/" + strconv.Itoa(s.tid)
		deadline := time.Now().Add(threadGoneTimeout)
		for {
			_, err := os.Stat(task)
			if errors.Is(err, os.ErrNotExist) {
				return
			}
			if time.Now().After(deadline) {
				s.err = fmt.Errorf("shim: the thread that started the job's init (tid %d) did not end", s.tid)
				return
			}
			time.Sleep(20 * time.Microsecond)
		}
	})
	return s.err
}

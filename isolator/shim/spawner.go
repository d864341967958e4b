package shim

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
)

// On cgroup v1 a waiting shim may be given a spare cgroup (Spare, made by
// the isolator with cgroup.Parent.NewSpare): one thread of the shim, its
// spawner, joins it while the shim waits (each join waits for an RCU grace
// period in the kernel, off any job's path). The isolator renames the
// spare to the job's cgroup at the job's start, the spawner's thread
// clones the job's init, which is born in the job's cgroup, and the thread
// ends: a thread that exits leaves its cgroups without a migration. Only
// that one thread is ever in the job's cgroup, for the clone and no more,
// and it is gone before the shim reports anything (release), so nothing
// of the shim is counted in the job's pids, frozen, signalled or killed
// with it, and the job's cgroup can always be removed. Its memory: a
// process's pages are charged to the memory cgroup of its thread-group
// leader (the mm owner), which stays where it was; only what the kernel
// allocates for the clone itself (the init's task and kernel stack, which
// are the init's) is charged to the job, as on cgroup v2, where the init
// is born inside too (CLONE_INTO_CGROUP).

// Spare is a cgroup a waiting shim's spawner thread sits in; the
// isolator's is a *cgroup.Spare.
type Spare interface {
	// Dirs are the spare's directories, one per hierarchy.
	Dirs() []string
	// Remove removes the spare unless it became a job's cgroup; it is
	// called once nothing of the shim is in it any more.
	Remove() error
}

// spareEnv, in a shim's environment, holds the directories of its spare
// cgroup as JSON.
const spareEnv = "JOBLET_SHIM_SPARE"

// threadGoneTimeout bounds the wait for the spawner's thread to end; it
// takes microseconds.
const threadGoneTimeout = time.Second

// spawner is the thread of a shim that sits in its spare cgroup and clones
// the job's init.
type spawner struct {
	req  chan func() error // the one start; closed to end the thread without one
	res  chan error
	gone chan struct{} // closed as the spawner's goroutine returns
	tid  int           // the thread's, set before gone is closed; 0: not in the spare
	once sync.Once
	err  error // of release
}

// spawnerFromEnv starts the spawner when the shim was given a spare, else
// returns nil.
func spawnerFromEnv() *spawner {
	v, ok := os.LookupEnv(spareEnv)
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

// serve joins the spare, waits for the start and runs it. It returns
// still locked to its thread, so the Go runtime ends the thread.
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
		for _, d := range dirs {
			if err := os.WriteFile(filepath.Join(d, "tasks"), []byte(strconv.Itoa(s.tid)), 0); err != nil {
				break
			}
		}
	}
	start, ok := <-s.req
	if !ok {
		return
	}
	s.res <- start()
}

// spawn runs start (the init's clone) on the spawner's thread, then ends
// the thread (release). It is sandbox.Spec.Spawn, called once.
func (s *spawner) spawn(start func() error) error {
	s.req <- start
	err := <-s.res
	if rerr := s.release(); err == nil {
		err = rerr
	}
	return err
}

// release ends the spawner's thread, without a start if none came, and
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

// spareEnvOf is the environment entry giving a shim the spare s.
func spareEnvOf(s Spare) (string, error) {
	b, err := json.Marshal(s.Dirs())
	if err != nil {
		return "", err
	}
	return spareEnv + "=" + string(b), nil
}

package jobs

import "os"

// Runner starts a job's command in its sandbox. The production Runner is
// the sandbox package; tests use a fake that runs the command directly.
type Runner interface {
	// Start returns once the command runs, or an error (of an errdefs kind
	// when the user can act on it) with nothing left running.
	Start(Spec) (Proc, error)
}

// Spec is what a Runner needs to start one job.
type Spec struct {
	ID       string
	Hostname string
	Args     []string // argv; Args[0] is the command
	Env      []string // the job's whole environment
	RootDir  string   // an empty directory to build the job's root on
	WorkDir  string   // the job's workspace, its /work
	Stdout   *os.File // write ends of the output pipes
	Stderr   *os.File
	// Cgroup is the job's cgroup: the Runner puts the job's first process
	// in it before that process runs anything of the job.
	Cgroup Cgroup
	// NetnsPath is the network namespace netd prepared for the job (empty:
	// a fresh one with loopback only); ResolvConf and Hosts go to its /etc.
	NetnsPath  string
	ResolvConf string
	Hosts      string
	// Work caps what the job may write to /work (no cap when MaxBytes is
	// zero; on the disk Work.Disk when set), Tmp its /tmp (the Runner's
	// default when zero).
	Work, Tmp Storage
	// UserNS, when set, is the user namespace the job's command runs in.
	UserNS *UserNS
}

// Storage caps a job's writable directory.
type Storage struct {
	MaxBytes  int64
	MaxInodes int64
	// Disk, for /work only, is the node of the block device holding a
	// filesystem of the cap's size (WorkDisk.Path) that the Runner mounts
	// as /work; empty: the cap is kept in memory.
	Disk string
}

// WorkDisks makes the /work of jobs with an IO limit: such a job's writes
// must reach a disk to be throttled, so its /work is a filesystem of its
// own, the size of the cap, on a block device of its own. The production
// one is the sandbox package's (a loop device); tests use a fake.
type WorkDisks interface {
	// Make makes image (a new file under the state directory) a
	// filesystem holding the files of dir with room for s more, owned by
	// the job's root of u when set, and attaches it to a block device.
	Make(image, dir string, s Storage, u *UserNS) (WorkDisk, error)
}

// WorkDisk is a job's /work disk, held until Close: the job's mount holds
// it from then on, and it is gone, with its image, when the job is.
type WorkDisk interface {
	Path() string
	Close() error
}

// UserNS maps a job's uids and gids 0..Size-1 to HostUID.. and HostGID..
// on the host.
type UserNS struct {
	HostUID, HostGID, Size uint32
}

// Proc is a started job.
type Proc interface {
	// Pid is the host pid of the job's init, 0 when the job ended before
	// its init could be identified.
	Pid() int
	// Wait waits for the job's command to end.
	Wait() (Result, error)
	// Terminate sends SIGTERM to every process of the job.
	Terminate() error
	// Kill sends SIGKILL to every process of the job.
	Kill() error
}

// Result is how a job's command ended.
type Result struct {
	ExitCode int // 128+Signal when killed by a signal
	Signal   int
	// OutputIncomplete is set by a Runner whose jobs forward their own
	// output (DetachedRunner) when logd did not take all of it.
	OutputIncomplete bool
	// Usage, when set, is what the job used as measured by its supervisor
	// (a shim) when the job ended; it is taken over the job's cgroup, which
	// may be gone by then (a systemd scope ends with its last process).
	Usage *Usage
}

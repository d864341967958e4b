package shim

import (
	"encoding/json"

	"github.com/joblet-dev/joblet/isolator/shim/wire"
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
// is born inside too (CLONE_INTO_CGROUP). The shim's side, the spawner
// thread itself, is shimproc/spawner.go.

// Spare is a cgroup a waiting shim's spawner thread sits in; the
// isolator's is a *cgroup.Spare.
type Spare interface {
	// Dirs are the spare's directories, one per hierarchy.
	Dirs() []string
	// Remove removes the spare unless it became a job's cgroup; it is
	// called once nothing of the shim is in it any more.
	Remove() error
}

// spareEnvOf is the environment entry giving a shim the spare s.
func spareEnvOf(s Spare) (string, error) {
	b, err := json.Marshal(s.Dirs())
	if err != nil {
		return "", err
	}
	return wire.SpareEnv + "=" + string(b), nil
}

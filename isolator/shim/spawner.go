package shim

import (
	"encoding/json"

	"github.com/joblet-dev/joblet/isolator/shim/wire"
)

// On cgroup v1 a waiting shim may be given a spare cgroup (Spare, made by
// the isolator with cgroup.Parent.NewSpare): one thread of the shim, its
// spawner, joins it while the shim waits (each join waits for an RCU grace
// period in the kernel, off any job's path), and clones the job's init
// there ahead of the job (sandbox.Prefork): the init is born in the spare,
// in namespaces of its own, and waits at its start gate having done
// nothing for any job. The shim then says it waits (wire.MsgWaiting, with
// the init's pid). The isolator renames the spare to the job's cgroup at
// the job's start, so the init is in the job's cgroup before its gate
// opens, and the spawner's thread ends before the gate opens: a thread
// that exits leaves its cgroups without a migration. A job on a netd
// network uses that init too: it joins netd's namespace at its gate
// (sandbox's sync.go). When no init could be preforked, the spawner's
// thread, still in the spare, clones the job's init at the job's start,
// then ends. Only that one thread of the shim is ever in the
// job's cgroup, for the clones and no more, and it is gone before the shim
// reports anything (release), so nothing of the shim is counted in the
// job's pids, frozen, signalled or killed with it, and the job's cgroup can
// always be removed. Its memory: a process's pages are charged to the
// memory cgroup of its thread-group leader (the mm owner), which stays
// where it was; the init's own start (its exec and Go runtime start until
// the gate) is charged to the job, as on cgroup v2, where the init is born
// inside too (CLONE_INTO_CGROUP). A spare that does not become a job's
// cgroup is removed only once the init preforked in it has exited: the
// shim reaps it before it exits when its spec pipe closes, and Close waits
// through a pidfd for one a killed shim left (cgroup removal does not wait
// for a busy cgroup). The shim's side, the spawner thread itself, is
// shimproc/spawner.go.

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

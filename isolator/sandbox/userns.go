package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// With Spec.UserNS set, a job's command runs in a user namespace of its
// own in which uid and gid 0..Size-1 are the host's HostUID.. and
// HostGID..: "root" in the job (pip install, chown in /work) is an
// unprivileged host uid, and host root is never the job's.
//
// Only the command is in that user namespace, not the init. The init is
// born in the host's user namespace, builds the job's mounts, hostname and
// loopback as today, and starts the command (a raw fork, stage.go) with
// CLONE_NEWUSER, writing the maps itself; the child drops the
// capabilities to the allowlist again (a new user namespace starts with
// all of them, bounding set included). So the job's mount, PID, UTS, IPC
// and network namespaces all belong to the host's user namespace: the capabilities the command keeps (the allowlist, confine.go)
// hold only over its own user namespace and the files whose owners are
// mapped in it, never over its mounts, hostname or network, even where
// seccomp would let a call through. The init stays host root, out of reach:
// the job cannot signal it (another uid, and CAP_KILL only in the job's
// namespace), nor trace or open it (non-dumpable).
//
// The map is written by the privileged init, so setgroups stays allowed
// (programs that drop privileges inside the job keep working): the reason
// unprivileged writers must deny it (dropping a group to get around a
// negative ACL) does not apply to a range the host gave the job whole.
//
// What the job must write belongs to the mapped root: the workspace tree
// (uploaded files included) is chowned to HostUID:HostGID by Start before
// the init exists; /tmp, /dev/shm and the capped /work's upper layer are
// tmpfs mounted with that owner.

// UserNS is the host range a job's uids and gids 0..Size-1 map to.
type UserNS struct {
	HostUID uint32 `json:"host_uid"`
	HostGID uint32 `json:"host_gid"`
	Size    uint32 `json:"size"`
}

// Validate checks that u is a range the kernel takes and that it never
// maps the job's root to the host's.
func (u UserNS) Validate() error {
	switch {
	case u.Size == 0:
		return errors.New("user namespace: size must be at least 1")
	case u.HostUID == 0 || u.HostGID == 0:
		return errors.New("user namespace: hostUID and hostGID must not be 0 (the host's root)")
	case uint64(u.HostUID)+uint64(u.Size) > math.MaxUint32 || uint64(u.HostGID)+uint64(u.Size) > math.MaxUint32:
		// 4294967295 is (uid_t)-1, never a valid id.
		return fmt.Errorf("user namespace: %d ids from uid %d / gid %d pass 4294967294", u.Size, u.HostUID, u.HostGID)
	}
	return nil
}

// apply makes the process attr starts a child of host root's in a new
// user namespace with u's maps, as its uid and gid 0. The maps alone
// would leave the child the host's uid 0, which is nobody there: the child
// switches to 0 of the namespace once the parent has written them.
func (u UserNS) apply(attr *syscall.SysProcAttr) {
	attr.Cloneflags |= syscall.CLONE_NEWUSER
	attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(u.HostUID), Size: int(u.Size)}}
	attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(u.HostGID), Size: int(u.Size)}}
	attr.GidMappingsEnableSetgroups = true
	attr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
}

// ownTree gives dir and everything in it to the job's root. Nothing of the
// job runs yet, so the tree holds only what the isolator put there
// (uploads); symbolic links are never followed.
func (u UserNS) ownTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, int(u.HostUID), int(u.HostGID)); err != nil {
			return fmt.Errorf("give %s to the job's root: %w", p, err)
		}
		return nil
	})
}

// checkHostIDs refuses a range that shares an id with a user or group of
// the host (etc/passwd, etc/group) or with a range given to a user for its
// own containers (etc/subuid, etc/subgid): their files and processes would
// be the job's. Missing files are fine.
func checkHostIDs(u UserNS, etc string) error {
	overlap := func(base uint32, r idRange) bool {
		return r.start < uint64(base)+uint64(u.Size) && uint64(base) < r.start+r.size
	}
	sources := []struct {
		file  string
		base  uint32
		what  string
		parse func(fields []string) (idRange, bool)
	}{
		{"passwd", u.HostUID, "user", entryID},
		{"group", u.HostGID, "group", entryID},
		{"subuid", u.HostUID, "subordinate uid range of", subRange},
		{"subgid", u.HostGID, "subordinate gid range of", subRange},
	}
	for _, src := range sources {
		b, err := os.ReadFile(filepath.Join(etc, src.file))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("user namespace: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Split(line, ":")
			r, ok := src.parse(fields)
			if ok && overlap(src.base, r) {
				return fmt.Errorf("user namespace: the range %d-%d overlaps %s %q (%s/%s); choose another joblet.userNamespace range",
					src.base, uint64(src.base)+uint64(u.Size)-1, src.what, fields[0], etc, src.file)
			}
		}
	}
	return nil
}

// idRange is a range of host ids: start..start+size-1.
type idRange struct{ start, size uint64 }

// entryID is the id (third field) of a passwd or group line, as a range of one.
func entryID(fields []string) (idRange, bool) {
	if len(fields) < 3 {
		return idRange{}, false
	}
	id, err := strconv.ParseUint(fields[2], 10, 32)
	return idRange{id, 1}, err == nil
}

// subRange is the range of a subuid or subgid line (name:start:count).
func subRange(fields []string) (idRange, bool) {
	if len(fields) != 3 {
		return idRange{}, false
	}
	start, err1 := strconv.ParseUint(fields[1], 10, 32)
	n, err2 := strconv.ParseUint(fields[2], 10, 32)
	return idRange{start, n}, err1 == nil && err2 == nil
}

package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// systemDirs are bound read-only from the host (or recreated as symlinks
// where the host has symlinks, as on merged-/usr systems).
var systemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib64"}

// devices are bound from the host's /dev into the job's.
var devices = []string{"null", "zero", "full", "random", "urandom", "tty"}

// procReadOnly are bound read-only over themselves in the job's /proc.
var procReadOnly = []string{"sys", "sysrq-trigger", "irq", "bus"}

// procMasked get /dev/null bound over them: they leak kernel memory, keys or
// host-wide scheduling details.
var procMasked = []string{"kcore", "keys", "timer_list", "sched_debug"}

const roFlags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV

// The job's root is built in two parts. The common part, the same for
// every job and holding nothing of any, is built by the init before its
// start gate (buildCommon), so that a preforked init (a waiting shim's)
// has it ready when its job comes: a tmpfs with the read-only binds of
// systemDirs, a /proc for the init's PID namespace and a /dev of binds of
// a few host devices, each mount the init's own. The job's part follows
// the gate (buildJobRoot): /etc, /work, /tmp, /dev/shm (whose owners,
// sizes and contents are the job's), then the pivot.
//
// Until the pivot the new root is stacked on the init's "/" in its
// private mount namespace, and reached through its descriptor only
// (stagedRoot): absolute paths still resolve in the host's tree (the
// root a process has is the mount under the stack), where the job's part
// finds its workspace, its /work disk and the host's resolv.conf. No host
// directory is shadowed and no mount point is needed until the job's.

// stagedRoot is the job's root while it is built.
type stagedRoot struct {
	fd   int    // the root's tmpfs, attached on "/"; close-on-exec
	path string // /proc/self/fd/<fd>: its root for path-based calls
}

// stackRoot mounts the new root's tmpfs on the init's "/".
func stackRoot() (*stagedRoot, error) {
	fs, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, setupErr("open a tmpfs for the new root", err)
	}
	defer unix.Close(fs)
	for _, o := range [][2]string{{"mode", "755"}, {"size", "16m"}} {
		if err := unix.FsconfigSetString(fs, o[0], o[1]); err != nil {
			return nil, setupErr("configure the new root's tmpfs: "+o[0], err)
		}
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return nil, setupErr("create the new root's tmpfs", err)
	}
	fd, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return nil, setupErr("mount the new root's tmpfs", err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, "/", unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		unix.Close(fd)
		return nil, setupErr("attach the new root on /", err)
	}
	return &stagedRoot{fd: fd, path: "/proc/self/fd/" + strconv.Itoa(fd)}, nil
}

// buildCommon makes / private and builds the part of the root that is
// the same for every job (see above). The init runs it before its gate.
func buildCommon() (*stagedRoot, error) {
	// First, so that nothing below propagates to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, setupErr("make / private", err)
	}
	root, err := stackRoot()
	if err != nil {
		return nil, err
	}
	for _, d := range systemDirs {
		if err := bindSystemDir(root.path, d); err != nil {
			return nil, err
		}
	}
	if err := mountProc(root.path); err != nil {
		return nil, err
	}
	if err := mountDev(root.path); err != nil {
		return nil, err
	}
	return root, nil
}

// buildJobRoot adds the job's part to the common root and pivots into it,
// leaving the init in /work.
func buildJobRoot(root *stagedRoot, spec *initSpec) error {
	layers := -1
	if spec.Work.Disk == "" && spec.Work.MaxBytes > 0 {
		fd, err := mountLayers(spec.RootDir, spec)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		layers = fd
	}
	work := func(root string, spec *initSpec) error { return mountWork(root, spec, layers) }
	steps := []func(string, *initSpec) error{writeEtc, work, mountTmp, mountShm}
	for _, step := range steps {
		if err := step(root.path, spec); err != nil {
			return err
		}
	}
	return pivot(root)
}

// mountLayers mounts the tmpfs that holds the upper layer (and overlayfs's
// work directory) of a capped /work, of the cap's size and inode count, at
// dir (the job's RootDir, in the host's tree), and returns an O_PATH
// descriptor of it: the overlay reaches it through /proc/self/fd. Outside
// the new root, it is detached with the host's root at the pivot, in the
// one unmount the job's start needs: a tmpfs mounted in the new root would
// take an unmount of its own once the overlay holds it, and each unmount
// waits for an RCU grace period (namespace_unlock), on the job's start
// path (0.5-20 ms on this 2-CPU machine under load).
func mountLayers(dir string, spec *initSpec) (int, error) {
	if err := mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, tmpfsData("0755", spec.Work)); err != nil {
		return -1, err
	}
	upper := filepath.Join(dir, "upper")
	for _, d := range []string{upper, filepath.Join(dir, "work")} {
		if err := mkdir(d); err != nil {
			return -1, err
		}
	}
	// /work's own owner and mode are the upper layer's root's.
	if u := spec.UserNS; u != nil {
		if err := os.Chown(upper, int(u.HostUID), int(u.HostGID)); err != nil {
			return -1, setupErr("give /work to the job's root", err)
		}
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, setupErr("open the workspace's upper layer", err)
	}
	return fd, nil
}

// mount wraps mount(2) with an error naming the step.
func mount(source, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		what := fstype
		if flags&unix.MS_BIND != 0 {
			what = "bind " + source
		}
		if flags&unix.MS_REMOUNT != 0 {
			what = "remount"
		}
		return setupErr(fmt.Sprintf("mount %s on %s", what, target), err)
	}
	return nil
}

func mkdir(path string) error {
	if err := os.Mkdir(path, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return setupErr("mkdir "+path, err)
	}
	return nil
}

// bindSystemDir makes host dir available read-only at the same place under
// root.
func bindSystemDir(root, dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return setupErr("stat "+dir, err)
	}
	target := filepath.Join(root, dir)
	if fi.Mode()&fs.ModeSymlink != 0 {
		link, err := os.Readlink(dir)
		if err != nil {
			return setupErr("read link "+dir, err)
		}
		if err := os.Symlink(link, target); err != nil {
			return setupErr("symlink "+target, err)
		}
		return nil
	}
	if err := mkdir(target); err != nil {
		return err
	}
	if err := mount(dir, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	return readOnlyTree(target)
}

// readOnlyTree makes the mount at target and every mount below it
// read-only, nosuid and nodev, keeping their other flags, in one call
// (mount_setattr, Linux 5.12): a bind mount ignores MS_RDONLY, and a
// remount changes one mount only.
func readOnlyTree(target string) error {
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if err := unix.MountSetattr(unix.AT_FDCWD, target, unix.AT_RECURSIVE, &attr); err != nil {
		return setupErr("make "+target+" read-only", err)
	}
	return nil
}

// remount changes the per-mount flags of the bind mount at target, keeping
// the flags it already has (noexec, atime flags).
func remount(target string, flags uintptr) error {
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil {
		return setupErr("statfs "+target, err)
	}
	const keep = unix.ST_RDONLY | unix.ST_NOSUID | unix.ST_NODEV | unix.ST_NOEXEC |
		unix.ST_NOATIME | unix.ST_NODIRATIME | unix.ST_RELATIME
	flags |= uintptr(st.Flags) & keep
	return mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|flags, "")
}

// writeEtc writes a minimal /etc; the host's is never bound.
func writeEtc(root string, spec *initSpec) error {
	etc := filepath.Join(root, "etc")
	if err := mkdir(etc); err != nil {
		return err
	}
	files := map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/sh\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
		"group": "root:x:0:\nnogroup:x:65534:\n",
		"hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
			"127.0.1.1\t" + spec.Hostname + "\n",
		"hostname":      spec.Hostname + "\n",
		"nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n",
	}
	if spec.Network {
		// netd's: the job's own address and name, and its network's resolver.
		files["hosts"] = spec.Hosts
		if spec.ResolvConf != "" {
			files["resolv.conf"] = spec.ResolvConf
		}
	} else if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		files["resolv.conf"] = string(b)
	}
	for name, content := range files {
		p := filepath.Join(etc, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return setupErr("write "+p, err)
		}
	}
	return nil
}

// mountWork makes the job's workspace its /work. Uncapped, it is a
// read-write bind of the host directory. Capped (spec.Work.MaxBytes set),
// it is an overlay: the host directory (the uploaded files, never charged
// to the job) is the lower layer, read-only, and everything the job writes
// or changes goes to an upper layer on the tmpfs of the cap's size and
// inode count that mountLayers made (layers, its descriptor), so a job
// cannot fill the host's disk through /work. With an IO limit
// (spec.Work.Disk set), the writes must reach a disk to be throttled:
// /work is then a filesystem of the cap's size on a loop device of its
// own, holding a copy of the uploaded files (see WorkDisk).
func mountWork(root string, spec *initSpec, layers int) error {
	target := filepath.Join(root, "work")
	if err := mkdir(target); err != nil {
		return err
	}
	if spec.Work.Disk != "" {
		return mountWorkDisk(spec.Work.Disk, target)
	}
	if spec.Work.MaxBytes <= 0 {
		if err := mount(spec.WorkDir, target, "", unix.MS_BIND, ""); err != nil {
			return err
		}
		return remount(target, unix.MS_NOSUID|unix.MS_NODEV)
	}
	dir := fmt.Sprintf("/proc/self/fd/%d", layers)
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", spec.WorkDir, dir, dir)
	return mount("overlay", target, "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts)
}

// tmpfsData is the mount data of a tmpfs of the given mode capped at s.
func tmpfsData(mode string, s Storage) string {
	return fmt.Sprintf("mode=%s,size=%d,nr_inodes=%d", mode, s.MaxBytes, s.MaxInodes)
}

// jobOwned adds to a tmpfs's mount data the owner of its root: the job's
// root with a user namespace (the host's root appears there as nobody).
func jobOwned(data string, spec *initSpec) string {
	if u := spec.UserNS; u != nil {
		return fmt.Sprintf("%s,uid=%d,gid=%d", data, u.HostUID, u.HostGID)
	}
	return data
}

func mountTmp(root string, spec *initSpec) error {
	target := filepath.Join(root, "tmp")
	if err := mkdir(target); err != nil {
		return err
	}
	return mount("tmpfs", target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, jobOwned(tmpfsData("1777", spec.Tmp), spec))
}

// mountProc mounts a proc for the init's PID namespace, the job's, with
// the dangerous parts read-only or masked.
func mountProc(root string) error {
	proc := filepath.Join(root, "proc")
	if err := mkdir(proc); err != nil {
		return err
	}
	if err := mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return err
	}
	for _, name := range procReadOnly {
		p := filepath.Join(proc, name)
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		if err := readOnlyTree(p); err != nil {
			return err
		}
	}
	for _, name := range procMasked {
		p := filepath.Join(proc, name)
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := mount("/dev/null", p, "", unix.MS_BIND, ""); err != nil {
			return err
		}
	}
	return nil
}

// mountDev builds a minimal /dev from binds of a few host device nodes;
// its /dev/shm is the job's (mountShm).
func mountDev(root string) error {
	dev := filepath.Join(root, "dev")
	if err := mkdir(dev); err != nil {
		return err
	}
	// nodev too: the device nodes below are bind mounts with flags of their
	// own, so a node the job makes in this tmpfs opens nothing.
	if err := mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755,size=64k"); err != nil {
		return err
	}
	for _, name := range devices {
		p := filepath.Join(dev, name)
		if err := os.WriteFile(p, nil, 0o666); err != nil {
			return setupErr("create "+p, err)
		}
		if err := mount(filepath.Join("/dev", name), p, "", unix.MS_BIND, ""); err != nil {
			return err
		}
		if err := remount(p, unix.MS_NOSUID|unix.MS_NOEXEC); err != nil {
			return err
		}
	}
	pts := filepath.Join(dev, "pts")
	if err := mkdir(pts); err != nil {
		return err
	}
	if err := mount("devpts", pts, "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return err
	}
	if err := mkdir(filepath.Join(dev, "shm")); err != nil {
		return err
	}
	links := [][2]string{
		{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"},
		{"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"},
	}
	for _, l := range links {
		if err := os.Symlink(l[0], filepath.Join(dev, l[1])); err != nil {
			return setupErr("symlink /dev/"+l[1], err)
		}
	}
	return nil
}

// mountShm mounts the job's /dev/shm, owned by its root.
func mountShm(root string, spec *initSpec) error {
	shm := filepath.Join(root, "dev", "shm")
	return mount("shm", shm, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, jobOwned("mode=1777,size=64m", spec))
}

// pivot makes root the root of the mount namespace, drops the host's root
// from it, and makes the new root read-only. pivot_root(".", ".") from
// inside the new root puts the host's root on top of it, where one lazy
// unmount detaches it with everything below it (the /work layers' tmpfs
// included).
func pivot(root *stagedRoot) error {
	err := unix.Fchdir(root.fd)
	unix.Close(root.fd)
	if err != nil {
		return setupErr("enter the new root", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return setupErr("pivot_root", err)
	}
	// The host's root, now on top of the new one, with everything below it.
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return setupErr("unmount old root", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return setupErr("chdir /", err)
	}
	if err := remount("/", roFlags); err != nil {
		return err
	}
	if err := unix.Chdir("/work"); err != nil {
		return setupErr("chdir /work", err)
	}
	return nil
}

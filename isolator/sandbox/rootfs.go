package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
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

const (
	roFlags     = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV
	oldRootName = ".old-root"
)

// buildRoot builds the job's root on a tmpfs at spec.RootDir and pivots into
// it, leaving the init in /work.
func buildRoot(spec *initSpec) error {
	// First, so that nothing below propagates to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return setupErr("make / private", err)
	}
	root := spec.RootDir
	layers := -1
	if spec.Work.Disk == "" && spec.Work.MaxBytes > 0 {
		fd, err := mountLayers(root, spec)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		layers = fd
	}
	if err := mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755,size=16m"); err != nil {
		return err
	}
	for _, d := range systemDirs {
		if err := bindSystemDir(root, d); err != nil {
			return err
		}
	}
	work := func(root string, spec *initSpec) error { return mountWork(root, spec, layers) }
	steps := []func(string, *initSpec) error{writeEtc, work, mountTmp, mountProc, mountDev}
	for _, step := range steps {
		if err := step(root, spec); err != nil {
			return err
		}
	}
	return pivot(root)
}

// mountLayers mounts the tmpfs that holds the upper layer (and overlayfs's
// work directory) of a capped /work, of the cap's size and inode count, at
// root, before the root's own tmpfs is mounted over it, and returns an
// O_PATH descriptor of it: the overlay reaches it through /proc/self/fd.
// Hidden under the new root, it is detached with the host's root at the
// pivot, in the one unmount the job's start needs: a tmpfs mounted in the
// new root would take an unmount of its own once the overlay holds it,
// and each unmount waits for an RCU grace period (namespace_unlock), on
// the job's start path (0.5-20 ms on this 2-CPU machine under load).
func mountLayers(root string, spec *initSpec) (int, error) {
	if err := mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, tmpfsData("0755", spec.Work)); err != nil {
		return -1, err
	}
	upper := filepath.Join(root, "upper")
	for _, d := range []string{upper, filepath.Join(root, "work")} {
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
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
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
	return remountReadOnly(target)
}

// remountReadOnly makes target and every mount below it read-only, nosuid
// and nodev. A bind mount ignores MS_RDONLY: only a remount of each mount
// makes it read-only.
func remountReadOnly(target string) error {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(target))
	if err != nil {
		return setupErr("read mountinfo", err)
	}
	for _, m := range mounts {
		if err := remount(m.Mountpoint, roFlags); err != nil {
			return err
		}
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

// mountProc mounts a proc for the job's PID namespace, with the dangerous
// parts read-only or masked.
func mountProc(root string, _ *initSpec) error {
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
		if err := remountReadOnly(p); err != nil {
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

// mountDev builds a minimal /dev from binds of a few host device nodes.
func mountDev(root string, spec *initSpec) error {
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
	shm := filepath.Join(dev, "shm")
	if err := mkdir(shm); err != nil {
		return err
	}
	if err := mount("shm", shm, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, jobOwned("mode=1777,size=64m", spec)); err != nil {
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

// pivot makes root the root of the mount namespace, drops the host's root
// from it, and makes the new root read-only.
func pivot(root string) error {
	old := filepath.Join(root, oldRootName)
	if err := mkdir(old); err != nil {
		return err
	}
	if err := unix.PivotRoot(root, old); err != nil {
		return setupErr("pivot_root", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return setupErr("chdir /", err)
	}
	oldInNew := "/" + oldRootName
	if err := unix.Unmount(oldInNew, unix.MNT_DETACH); err != nil {
		return setupErr("unmount old root", err)
	}
	if err := os.Remove(oldInNew); err != nil {
		return setupErr("remove old root", err)
	}
	if err := remount("/", roFlags); err != nil {
		return err
	}
	if err := unix.Chdir("/work"); err != nil {
		return setupErr("chdir /work", err)
	}
	return nil
}

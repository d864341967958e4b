// Package nsfile makes network namespaces that live on without a process:
// each is an nsfs bind mount on a file of netd's own directory (not
// /var/run/netns), so the isolator can setns(2) a job into it and netd can
// find it again after a restart.
package nsfile

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Create makes a new network namespace and pins it at path, which must not
// exist. The calling goroutine's namespace is not changed.
func Create(path string) (err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	f.Close()
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()

	// unshare(CLONE_NEWNET) changes the calling thread only: do it on a
	// locked thread of its own, and let that thread die if it cannot be put
	// back into the original namespace.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare netns: %w", err)
			runtime.UnlockOSThread()
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		err = unix.Mount(src, path, "", unix.MS_BIND, "")
		if serr := netns.Set(orig); serr != nil {
			errc <- errors.Join(err, fmt.Errorf("restore netns: %w", serr))
			return // the thread stays locked and exits with the goroutine
		}
		runtime.UnlockOSThread()
		if err != nil {
			err = fmt.Errorf("bind netns to %s: %w", path, err)
		}
		errc <- err
	}()
	return <-errc
}

// Open returns a handle on the namespace pinned at path.
func Open(path string) (netns.NsHandle, error) {
	h, err := netns.GetFromPath(path)
	if err != nil {
		return netns.None(), fmt.Errorf("open netns %s: %w", path, err)
	}
	return h, nil
}

// Pinned reports whether path is a live namespace pin (an nsfs mount), not
// a leftover plain file.
func Pinned(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// Remove unpins the namespace at path and removes the file; a path that is
// gone already is fine. The namespace itself ends when no process is in it.
func Remove(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

package service

import (
	"github.com/joblet-dev/joblet/isolator/jobs"
	"github.com/joblet-dev/joblet/isolator/sandbox"
)

// workDisks makes IO-limited jobs' /work disks with the sandbox package
// (an ext4 image on a loop device).
type workDisks struct{}

func (workDisks) Make(image, dir string, s jobs.Storage, u *jobs.UserNS) (jobs.WorkDisk, error) {
	return sandbox.NewWorkDisk(image, dir, sandbox.Storage(s), (*sandbox.UserNS)(u))
}

package cli

import (
	"context"

	"github.com/spf13/pflag"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/rnx/client"
	"github.com/joblet-dev/joblet/rnx/upload"
)

// uploadFlags are rnx run's --upload and --upload-dir.
type uploadFlags struct {
	files, dirs []string
}

func (u *uploadFlags) register(fl *pflag.FlagSet) {
	fl.StringArrayVar(&u.files, "upload", nil, "upload `FILE` to /work/<its name> (repeatable)")
	fl.StringArrayVar(&u.dirs, "upload-dir", nil, "upload `DIR` to /work/<its name>/..., or with \".\" the current directory's contents straight into /work (repeatable)")
}

// plan walks the files to upload, relative paths from cwd, or returns
// nil when there are none.
func (u *uploadFlags) plan(cwd string) (*upload.Plan, error) {
	if len(u.files) == 0 && len(u.dirs) == 0 {
		return nil, nil
	}
	return upload.Build(cwd, u.files, u.dirs)
}

// startJob creates the job: with RunJob, or, when there are files to
// upload, with RunJobWithUploads, showing the progress on stderr.
func (a *app) startJob(ctx context.Context, conn *client.Conn, spec *jobletv1.JobSpec, plan *upload.Plan) (*jobletv1.Job, error) {
	if plan == nil {
		resp, err := conn.RunJob(ctx, &jobletv1.RunJobRequest{Spec: spec})
		return resp.GetJob(), err
	}
	tty := a.env.IsTerminal != nil && a.env.IsTerminal(a.env.Stderr)
	return upload.Send(ctx, conn, spec, plan, upload.NewProgress(a.env.Stderr, tty, plan))
}

package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/joblet-dev/joblet/isolator/limits"
	"github.com/joblet-dev/joblet/isolator/workspace"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// Uploads. A job's files are received before the job exists, into a
// directory of their own under <state>/uploads, which becomes the job's
// workspace (<state>/work/<id>) by a rename once the job is recorded:
//
//	RunWithUploads ── refuse a bad spec or manifest (nothing made yet)
//	      │
//	      ▼ receive every chunk into uploads/upload-XXXX (workspace.Writer)
//	      │ a failed or cancelled upload: Abort, remove it; no id, no record
//	      ▼
//	Run, with the directory in ctx ── immediate: start renames it to work/<id>
//	                               └─ scheduled: schedule renames it to
//	                                  work/<id> at once; it stays there until
//	                                  the job ends or is canceled
//
// So an upload that fails leaves nothing of the job behind: no id, record
// or workspace. A job that is refused after its upload (too many running,
// a shutdown) leaves nothing either; one that fails to start is recorded
// FAILED, as with Run, and its workspace removed.

func uploadsRoot(state string) string { return filepath.Join(state, "uploads") }

type uploadKey struct{}

// withUpload returns ctx carrying dir, the received upload of the job that
// Run is about to record.
func withUpload(ctx context.Context, dir string) context.Context {
	return context.WithValue(ctx, uploadKey{}, dir)
}

// uploadFrom returns the upload directory ctx carries, or "".
func uploadFrom(ctx context.Context) string {
	dir, _ := ctx.Value(uploadKey{}).(string)
	return dir
}

// RunWithUploads implements isolatorapi.Uploader: it checks spec and the
// manifest, writes every file the client streams through a
// workspace.Writer (chunk by chunk, never a whole file in memory), and then
// runs the job as Run does, in a workspace holding those files. A request
// refused, an upload that fails, and a client that goes away mid-upload
// (ctx is cancelled and next fails) leave nothing behind.
func (r *Registry) RunWithUploads(ctx context.Context, spec *jobletv1.JobSpec, entries []*jobletv1.UploadEntry,
	next func() (*jobletv1.UploadChunk, error)) (*jobletv1.Job, error) {
	// What Run would refuse, refused before a byte is taken.
	if err := Validate(spec); err != nil {
		return nil, err
	}
	if _, err := limits.Resolve(spec.GetLimits(), r.opts.Limits, r.opts.Host); err != nil {
		return nil, err
	}
	if err := r.checkNetwork(spec); err != nil {
		return nil, err
	}
	ents := make([]workspace.Entry, len(entries))
	for i, e := range entries {
		ents[i] = workspace.Entry{Path: e.GetPath(), Mode: e.GetMode(), Dir: e.GetDir(), Size: e.GetSize()}
	}
	if err := workspace.ValidateManifest(ents, r.opts.Uploads); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(uploadsRoot(r.opts.StateDir), "upload-")
	if err != nil {
		return nil, r.stateError(err)
	}
	// Gone by then once it became a workspace; otherwise it must go.
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			r.opts.Log.Error().Err(err).Msg("cannot remove an upload")
		}
	}()
	began := time.Now()
	n, err := receive(dir, ents, r.opts.Uploads, next)
	if err == nil {
		err = ctx.Err() // the last chunk came, then the client went away
	}
	if err != nil {
		r.opts.Log.Info().Err(err).Int("files", len(ents)).Int64("bytes", n).Msg("upload failed; nothing kept")
		return nil, uploadError(err)
	}
	r.opts.Log.Debug().Int("files", len(ents)).Int64("bytes", n).Dur("took", time.Since(began)).Msg("upload received")
	return r.Run(withUpload(ctx, dir), spec)
}

// receive writes the files of an upload into dir, the chunks next returns
// one by one, and returns the bytes received. On error, dir is left empty.
func receive(dir string, ents []workspace.Entry, l workspace.Limits, next func() (*jobletv1.UploadChunk, error)) (int64, error) {
	w, err := workspace.Create(dir, ents, l)
	if err != nil {
		return 0, err
	}
	defer w.Abort() // a no-op after a successful Close
	var n int64
	for {
		ch, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, err
		}
		if err := w.Write(int(ch.GetIndex()), ch.GetData()); err != nil {
			return n, err
		}
		n += int64(len(ch.GetData()))
	}
	return n, w.Close()
}

// uploadError is what the client is told about a failed upload. The
// workspace's errors name the file and the rule already; a stream that
// broke is reported as such.
func uploadError(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("upload failed: %w", err)
	}
	return err
}

// ownWorkspace says whether job j needs a workspace of its own: it brings
// files (its upload, or the workspace made when it was scheduled), or its
// /work is the workspace itself (uncapped: a read-write bind) or a disk
// made from it (an IO limit). Any other job's /work is an overlay over
// emptyWork.
func (r *Registry) ownWorkspace(j *job) bool {
	return j.upload != "" || j.rec.GetScheduleInput() != "" || r.opts.Workspace.MaxBytes <= 0 ||
		j.rec.GetLimits().GetMaxIoBps() > 0
}

// makeWorkspace makes job j's workspace at work: its upload moved in place
// (an immediate job's), the one made when it was scheduled (which may
// hold its upload), or a new empty directory.
func (r *Registry) makeWorkspace(j *job, work string) error {
	if j.upload != "" {
		return r.placeUpload(j, work)
	}
	err := startFS.run(func() error { return os.Mkdir(work, 0o755) })
	if errors.Is(err, fs.ErrExist) && j.rec.GetScheduleInput() != "" {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create workspace: %w", err)
	}
	return nil
}

// placeUpload moves j's received upload to work, its workspace. The rename
// is atomic: the workspace is either absent or complete.
func (r *Registry) placeUpload(j *job, work string) error {
	// MkdirTemp made it owner-only; a workspace is traversable by all,
	// like one made by makeWorkspace.
	if err := os.Chmod(j.upload, 0o755); err != nil {
		return fmt.Errorf("upload workspace: %w", err)
	}
	if err := os.Rename(j.upload, work); err != nil {
		return fmt.Errorf("upload workspace: %w", err)
	}
	j.upload = ""
	return nil
}

// workDir is job id's workspace.
func (r *Registry) workDir(id string) string { return filepath.Join(workRoot(r.opts.StateDir), id) }

// sweepUploads removes what an earlier isolator left of uploads: those it
// was receiving, and workspaces of jobs it never recorded (an upload
// placed for a job whose record was not saved).
func (r *Registry) sweepUploads() error {
	up := uploadsRoot(r.opts.StateDir)
	if err := os.RemoveAll(up); err != nil {
		return fmt.Errorf("remove old uploads: %w", err)
	}
	if err := os.Mkdir(up, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", up, err)
	}
	names, err := os.ReadDir(workRoot(r.opts.StateDir))
	if err != nil {
		return fmt.Errorf("read workspaces: %w", err)
	}
	for _, d := range names {
		if _, ok := r.jobs[d.Name()]; ok {
			continue
		}
		if _, ok := r.ended[d.Name()]; ok {
			continue
		}
		r.opts.Log.Warn().Str("workspace", d.Name()).Msg("removing the workspace of an unrecorded job")
		if err := os.RemoveAll(filepath.Join(workRoot(r.opts.StateDir), d.Name())); err != nil {
			return fmt.Errorf("remove workspace: %w", err)
		}
	}
	return nil
}

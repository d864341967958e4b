package fake

import (
	"context"
	"errors"
	"io"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/isolatorapi"
)

var _ isolatorapi.Uploader = (*Isolator)(nil)

// Upload is what the fake isolator received for one job.
type Upload struct {
	Entries []*jobletv1.UploadEntry
	// Chunks are the chunks in the order they arrived.
	Chunks []*jobletv1.UploadChunk
}

// RunWithUploads implements isolatorapi.Uploader: it reads every chunk,
// then records a RUNNING job as Run does and keeps what it received. An
// error from next ends it with that error and no job, as the isolator does.
func (f *Isolator) RunWithUploads(ctx context.Context, spec *jobletv1.JobSpec, entries []*jobletv1.UploadEntry,
	next func() (*jobletv1.UploadChunk, error)) (*jobletv1.Job, error) {
	up := Upload{Entries: entries}
	for {
		ch, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if int(ch.GetIndex()) >= len(entries) {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "chunk for entry %d of %d", ch.GetIndex(), len(entries))
		}
		up.Chunks = append(up.Chunks, ch)
	}
	j, err := f.Run(ctx, spec)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.uploads == nil {
		f.uploads = map[string]Upload{}
	}
	f.uploads[j.GetId()] = up
	return j, nil
}

// Uploaded returns what RunWithUploads received for job id.
func (f *Isolator) Uploaded(id string) (Upload, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	up, ok := f.uploads[id]
	return up, ok
}

package isolatorapi

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"

	"github.com/joblet-dev/joblet/proto/errdefs"
	isolatorv1 "github.com/joblet-dev/joblet/proto/gen/isolator/v1"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// Uploader runs a job with files for its workspace. The client NewClient
// returns implements it; Register serves it when the implementation does.
type Uploader interface {
	// RunWithUploads is Run with entries written into the job's /work
	// before it starts. next returns the chunks of the files in manifest
	// order, then io.EOF; any other error from next ends the upload, and
	// nothing of the job is kept.
	RunWithUploads(ctx context.Context, spec *jobletv1.JobSpec, entries []*jobletv1.UploadEntry,
		next func() (*jobletv1.UploadChunk, error)) (*jobletv1.Job, error)
}

// RunWithUploads implements Uploader: it streams the manifest, then every
// chunk next returns, to the isolator. Chunks are sent as they come, so
// no more than one is held at a time.
func (c client) RunWithUploads(ctx context.Context, spec *jobletv1.JobSpec, entries []*jobletv1.UploadEntry,
	next func() (*jobletv1.UploadChunk, error)) (*jobletv1.Job, error) {
	// Cancelling the stream is how the isolator learns that an upload
	// failed on this side: it then removes what it wrote.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.c.RunWithUploads(ctx)
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	manifest := &jobletv1.RunJobUploadRequest{Part: &jobletv1.RunJobUploadRequest_Manifest{
		Manifest: &jobletv1.UploadManifest{Spec: spec, Entries: entries},
	}}
	if err := st.Send(manifest); err != nil {
		return nil, sendError(st, err)
	}
	for {
		ch, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		req := &jobletv1.RunJobUploadRequest{Part: &jobletv1.RunJobUploadRequest_Chunk{Chunk: ch}}
		if err := st.Send(req); err != nil {
			return nil, sendError(st, err)
		}
	}
	r, err := st.CloseAndRecv()
	return r.GetJob(), errdefs.FromGRPC(err)
}

// sendError is the error of a failed Send: io.EOF means the isolator ended
// the stream, and its status says why.
func sendError(st grpc.ClientStreamingClient[jobletv1.RunJobUploadRequest, isolatorv1.JobResponse], err error) error {
	if errors.Is(err, io.EOF) {
		_, err = st.CloseAndRecv()
	}
	return errdefs.FromGRPC(err)
}

// RunWithUploads serves Uploader when the implementation is one, and
// answers "unimplemented" otherwise.
func (s server) RunWithUploads(st grpc.ClientStreamingServer[jobletv1.RunJobUploadRequest, isolatorv1.JobResponse]) error {
	u, ok := s.impl.(Uploader)
	if !ok {
		return errdefs.ToGRPC(errdefs.Errorf(errdefs.ErrFailedPrecondition, "this isolator does not take uploads"))
	}
	spec, entries, next, err := ReadUploadStream(st.Recv)
	if err != nil {
		return errdefs.ToGRPC(err)
	}
	j, err := u.RunWithUploads(st.Context(), spec, entries, next)
	if err != nil {
		return errdefs.ToGRPC(err)
	}
	return st.SendAndClose(&isolatorv1.JobResponse{Job: j})
}

// ReadUploadStream reads the manifest that opens an upload stream with
// recv and returns it with a next function that yields the chunks after
// it, then io.EOF. A stream that does not open with a manifest, or that
// has a second one, is an errdefs.ErrInvalidArgument error.
func ReadUploadStream(recv func() (*jobletv1.RunJobUploadRequest, error)) (
	*jobletv1.JobSpec, []*jobletv1.UploadEntry, func() (*jobletv1.UploadChunk, error), error) {
	first, err := recv()
	if errors.Is(err, io.EOF) {
		return nil, nil, nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "upload stream ended before its manifest")
	}
	if err != nil {
		return nil, nil, nil, err
	}
	m := first.GetManifest()
	if m == nil {
		return nil, nil, nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "upload stream must start with a manifest")
	}
	next := func() (*jobletv1.UploadChunk, error) {
		req, err := recv()
		if err != nil {
			return nil, err // io.EOF at the end, as documented
		}
		ch := req.GetChunk()
		if ch == nil {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "upload stream has a second manifest")
		}
		return ch, nil
	}
	return m.GetSpec(), m.GetEntries(), next, nil
}

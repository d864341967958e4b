package api

import (
	"errors"
	"io"

	"google.golang.org/grpc"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/isolatorapi"
	"github.com/joblet-dev/joblet/proto/logging"
)

// Bounds on an upload stream. The isolator owns the real rules (paths,
// modes, byte limits from its config) and checks every one of them; these
// keep obviously bad streams away from it.
const (
	MaxUploadEntries   = 10000
	MaxUploadPathLen   = 4096
	MaxUploadChunkSize = 1 << 20 // rnx sends 256 KiB chunks
)

// RunJobWithUploads implements jobletv1.JobServiceServer. It checks the
// manifest, then forwards it and each chunk to the isolator as it arrives,
// so the gateway holds at most one chunk of an upload at a time. An error
// on either side ends both streams; the isolator then keeps nothing of the
// job.
func (s *Server) RunJobWithUploads(st grpc.ClientStreamingServer[jobletv1.RunJobUploadRequest, jobletv1.RunJobResponse]) error {
	ctx := st.Context()
	up, ok := s.iso.(isolatorapi.Uploader)
	if !ok {
		return errdefs.ToGRPC(errdefs.Errorf(errdefs.ErrFailedPrecondition, "uploads are not available"))
	}
	spec, entries, next, err := isolatorapi.ReadUploadStream(st.Recv)
	if err != nil {
		return errdefs.ToGRPC(err)
	}
	if err := ValidateSpec(spec); err != nil {
		return errdefs.ToGRPC(err)
	}
	if err := ValidateUploadEntries(entries); err != nil {
		return errdefs.ToGRPC(err)
	}
	var chunks, bytes int64
	checked := func() (*jobletv1.UploadChunk, error) {
		ch, err := next()
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		if err != nil {
			// The client went away or broke the stream: a cancellation, not
			// a helper failure.
			return nil, errdefs.FromGRPC(err)
		}
		if err := validateChunk(ch, len(entries)); err != nil {
			return nil, err
		}
		chunks++
		bytes += int64(len(ch.GetData()))
		return ch, nil
	}
	j, err := up.RunWithUploads(ctx, spec, entries, checked)
	if err != nil {
		return userError(ctx, "isolator", err)
	}
	logging.From(ctx).Info().Str(logging.KeyJobID, j.GetId()).Int("files", len(entries)).
		Int64("chunks", chunks).Int64("bytes", bytes).Msg("job started with uploads")
	return st.SendAndClose(&jobletv1.RunJobResponse{Job: j})
}

// ValidateUploadEntries checks the shape of an upload's entries: how many,
// path lengths and sizes. Whether each path and mode is acceptable is the
// isolator's to judge.
func ValidateUploadEntries(entries []*jobletv1.UploadEntry) error {
	if len(entries) > MaxUploadEntries {
		return errdefs.Errorf(errdefs.ErrResourceExhausted, "too many upload entries: %d (at most %d)", len(entries), MaxUploadEntries)
	}
	for _, e := range entries {
		switch p := e.GetPath(); {
		case p == "":
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload entry with an empty path")
		case len(p) > MaxUploadPathLen:
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload path %q...: longer than %d bytes", shown(p), MaxUploadPathLen)
		case e.GetSize() < 0:
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload %q has a negative size", shown(p))
		case e.GetDir() && e.GetSize() != 0:
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload directory %q has a size", shown(p))
		}
	}
	return nil
}

func validateChunk(ch *jobletv1.UploadChunk, entries int) error {
	if int(ch.GetIndex()) >= entries {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload chunk for entry %d; the manifest has %d", ch.GetIndex(), entries)
	}
	if n := len(ch.GetData()); n > MaxUploadChunkSize {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "upload chunk of %d bytes; at most %d per chunk", n, MaxUploadChunkSize)
	}
	return nil
}

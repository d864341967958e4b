package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"google.golang.org/grpc"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// ChunkSize is how many bytes of a file one message carries: well under
// the gateway's 4 MiB message limit, and the most rnx holds of a file.
const ChunkSize = 256 << 10

// Progress is told about every chunk once it is sent.
type Progress interface {
	Add(n int)
	// Done is called once, after the last chunk.
	Done()
}

type stream = grpc.ClientStreamingClient[jobletv1.RunJobUploadRequest, jobletv1.RunJobResponse]

// Send runs spec with the files of p: the manifest first, then each file
// read from disk chunk by chunk. If anything fails on this side the
// stream is cancelled, and the server keeps nothing of the job. Errors
// from the server are returned as the gRPC status it sent.
func Send(ctx context.Context, c jobletv1.JobServiceClient, spec *jobletv1.JobSpec, p *Plan, prog Progress) (*jobletv1.Job, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.RunJobWithUploads(ctx)
	if err != nil {
		return nil, err
	}
	m := &jobletv1.RunJobUploadRequest{Part: &jobletv1.RunJobUploadRequest_Manifest{
		Manifest: &jobletv1.UploadManifest{Spec: spec, Entries: p.Manifest()},
	}}
	if err := st.Send(m); err != nil {
		return nil, serverError(st, err)
	}
	for i, e := range p.Entries {
		if e.Dir || e.Size == 0 {
			continue // made from the manifest alone
		}
		if err := sendFile(st, uint32(i), e, prog); err != nil {
			return nil, serverError(st, err)
		}
	}
	prog.Done()
	r, err := st.CloseAndRecv()
	return r.GetJob(), err
}

// serverError is the error of a failed Send: io.EOF means the server ended
// the stream, and its status says why; anything else is this side's.
func serverError(st stream, err error) error {
	if errors.Is(err, io.EOF) {
		_, err = st.CloseAndRecv()
	}
	return err
}

// sendFile streams e's bytes, exactly e.Size of them, as the manifest
// said. A file that changed size since the walk is an error.
func sendFile(st stream, index uint32, e Entry, prog Progress) error {
	// O_NOFOLLOW: a file swapped for a symlink since the walk is refused
	// rather than followed.
	f, err := os.OpenFile(e.Source, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	defer f.Close()
	left := e.Size
	for left > 0 {
		// A fresh buffer for every chunk: gRPC may still hold a sent one.
		buf := make([]byte, min(left, ChunkSize))
		n, err := io.ReadFull(f, buf)
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("upload: %s shrank while being uploaded", e.Source)
		}
		if err != nil {
			return fmt.Errorf("upload: %w", err)
		}
		req := &jobletv1.RunJobUploadRequest{Part: &jobletv1.RunJobUploadRequest_Chunk{
			Chunk: &jobletv1.UploadChunk{Index: index, Data: buf},
		}}
		if err := st.Send(req); err != nil {
			return err
		}
		prog.Add(n)
		left -= int64(n)
	}
	if n, _ := f.Read(make([]byte, 1)); n > 0 {
		return fmt.Errorf("upload: %s grew while being uploaded", e.Source)
	}
	return nil
}

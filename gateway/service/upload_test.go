package service

import (
	"bytes"
	"strconv"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/joblet-dev/joblet/deploy/certs"
	"github.com/joblet-dev/joblet/gateway/api"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

func manifestReq(spec *jobletv1.JobSpec, entries ...*jobletv1.UploadEntry) *jobletv1.RunJobUploadRequest {
	return &jobletv1.RunJobUploadRequest{Part: &jobletv1.RunJobUploadRequest_Manifest{
		Manifest: &jobletv1.UploadManifest{Spec: spec, Entries: entries},
	}}
}

func chunkReq(index uint32, data []byte) *jobletv1.RunJobUploadRequest {
	return &jobletv1.RunJobUploadRequest{Part: &jobletv1.RunJobUploadRequest_Chunk{
		Chunk: &jobletv1.UploadChunk{Index: index, Data: data},
	}}
}

// upload sends reqs on a new RunJobWithUploads stream and returns the
// answer. A Send that fails because the gateway ended the stream early is
// not an error of its own: the status comes from CloseAndRecv.
func upload(t *testing.T, c jobletv1.JobServiceClient, reqs ...*jobletv1.RunJobUploadRequest) (*jobletv1.RunJobResponse, error) {
	t.Helper()
	st, err := c.RunJobWithUploads(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		if err := st.Send(r); err != nil {
			break
		}
	}
	return st.CloseAndRecv()
}

var uploadSpec = &jobletv1.JobSpec{Command: "sh", Args: []string{"/work/run.sh"}}

func TestAdminUploadIsForwardedInOrder(t *testing.T) {
	g := startGateway(t)
	c := g.client(t, "alice", certs.RoleAdmin)
	entries := []*jobletv1.UploadEntry{
		{Path: "data", Mode: 0o755, Dir: true},
		{Path: "data/big.bin", Mode: 0o644, Size: 3 << 20},
		{Path: "data/empty", Mode: 0o600},
		{Path: "run.sh", Mode: 0o755, Size: 5},
	}
	reqs := []*jobletv1.RunJobUploadRequest{manifestReq(uploadSpec, entries...)}
	var want []*jobletv1.UploadChunk
	for i := range 3 { // 3 chunks of 1 MiB, the most a chunk may carry
		d := bytes.Repeat([]byte{byte('a' + i)}, api.MaxUploadChunkSize)
		reqs = append(reqs, chunkReq(1, d))
		want = append(want, &jobletv1.UploadChunk{Index: 1, Data: d})
	}
	reqs = append(reqs, chunkReq(3, []byte("echo\n")))
	want = append(want, &jobletv1.UploadChunk{Index: 3, Data: []byte("echo\n")})

	r, err := upload(t, c, reqs...)
	if err != nil {
		t.Fatal(err)
	}
	if r.GetJob().GetCommand() != "sh" || r.GetJob().GetState() != jobletv1.JobState_JOB_STATE_RUNNING {
		t.Fatalf("job = %v", r.GetJob())
	}
	got, ok := g.iso.Uploaded(r.GetJob().GetId())
	if !ok {
		t.Fatal("the isolator got no upload")
	}
	if len(got.Entries) != len(entries) {
		t.Fatalf("entries: got %d, want %d", len(got.Entries), len(entries))
	}
	for i := range entries {
		if !proto.Equal(got.Entries[i], entries[i]) {
			t.Errorf("entry %d: got %v, want %v", i, got.Entries[i], entries[i])
		}
	}
	if len(got.Chunks) != len(want) {
		t.Fatalf("chunks: got %d, want %d", len(got.Chunks), len(want))
	}
	for i := range want {
		if !proto.Equal(got.Chunks[i], want[i]) {
			t.Errorf("chunk %d differs (index %d, %d bytes)", i, got.Chunks[i].GetIndex(), len(got.Chunks[i].GetData()))
		}
	}
}

func TestViewerCannotUpload(t *testing.T) {
	g := startGateway(t)
	c := g.client(t, "bob", certs.RoleViewer)
	_, err := upload(t, c, manifestReq(uploadSpec), chunkReq(0, []byte("x")))
	wantCode(t, err, codes.PermissionDenied, "")
	if jobs, _ := g.iso.List(ctxT(t)); len(jobs) != 0 {
		t.Fatalf("a viewer's upload made a job: %v", jobs)
	}
}

func TestBadUploadsAreRefused(t *testing.T) {
	file := &jobletv1.UploadEntry{Path: "f", Mode: 0o644, Size: 10}
	for name, tc := range map[string]struct {
		reqs []*jobletv1.RunJobUploadRequest
		code codes.Code
		msg  string
	}{
		"chunk over the chunk size": {
			reqs: []*jobletv1.RunJobUploadRequest{manifestReq(uploadSpec, file), chunkReq(0, make([]byte, api.MaxUploadChunkSize+1))},
			code: codes.InvalidArgument, msg: "at most 1048576 per chunk",
		},
		"message over the gateway's maximum": {
			reqs: []*jobletv1.RunJobUploadRequest{manifestReq(uploadSpec, file), chunkReq(0, make([]byte, DefaultLimits().MaxRecvMsgSize))},
			code: codes.ResourceExhausted, msg: "larger than max",
		},
		"chunk before the manifest": {
			reqs: []*jobletv1.RunJobUploadRequest{chunkReq(0, []byte("x"))},
			code: codes.InvalidArgument, msg: "must start with a manifest",
		},
		"no manifest at all": {
			code: codes.InvalidArgument, msg: "ended before its manifest",
		},
		"second manifest": {
			reqs: []*jobletv1.RunJobUploadRequest{manifestReq(uploadSpec, file), manifestReq(uploadSpec, file)},
			code: codes.InvalidArgument, msg: "second manifest",
		},
		"chunk for no entry": {
			reqs: []*jobletv1.RunJobUploadRequest{manifestReq(uploadSpec, file), chunkReq(1, []byte("x"))},
			code: codes.InvalidArgument, msg: "the manifest has 1",
		},
		"bad spec": {
			reqs: []*jobletv1.RunJobUploadRequest{manifestReq(&jobletv1.JobSpec{}, file)},
			code: codes.InvalidArgument, msg: "command",
		},
		"empty path": {
			reqs: []*jobletv1.RunJobUploadRequest{manifestReq(uploadSpec, &jobletv1.UploadEntry{Mode: 0o644})},
			code: codes.InvalidArgument, msg: "empty path",
		},
		"too many entries": {
			reqs: []*jobletv1.RunJobUploadRequest{manifestReq(uploadSpec, manyEntries(api.MaxUploadEntries+1)...)},
			code: codes.ResourceExhausted, msg: "too many upload entries",
		},
	} {
		t.Run(name, func(t *testing.T) {
			g := startGateway(t)
			c := g.client(t, "alice", certs.RoleAdmin)
			_, err := upload(t, c, tc.reqs...)
			wantCode(t, err, tc.code, tc.msg)
			if jobs, _ := g.iso.List(ctxT(t)); len(jobs) != 0 {
				t.Fatalf("a refused upload made a job: %v", jobs)
			}
		})
	}
}

func manyEntries(n int) []*jobletv1.UploadEntry {
	out := make([]*jobletv1.UploadEntry, n)
	for i := range out {
		out[i] = &jobletv1.UploadEntry{Path: "d" + strconv.Itoa(i), Mode: 0o755, Dir: true}
	}
	return out
}

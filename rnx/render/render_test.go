package render

import (
	"strings"
	"testing"
	"time"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var t0 = time.Date(2025, 7, 11, 6, 18, 54, 0, time.UTC)

func ts(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(t0.Add(d)) }

func render(t *testing.T, f func(*strings.Builder) error) string {
	t.Helper()
	var b strings.Builder
	if err := f(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestHeader(t *testing.T) {
	j := &jobletv1.Job{Id: "2", Command: "bash", Args: []string{"-c", "while true; do :; done"},
		State: jobletv1.JobState_JOB_STATE_RUNNING, StartTime: ts(0)}
	got := render(t, func(b *strings.Builder) error { return Header(b, j) })
	want := "ID: 2\nCommand: bash -c while true; do :; done\nStatus: RUNNING\nStartTime: 2025-07-11T06:18:54Z\n"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}

	j = &jobletv1.Job{Id: "3", Name: "nightly", Command: "backup", State: jobletv1.JobState_JOB_STATE_SCHEDULED, Network: "backend"}
	got = render(t, func(b *strings.Builder) error { return Header(b, j) })
	want = "ID: 3\nName: nightly\nCommand: backup\nStatus: SCHEDULED\nNetwork: backend\n"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestTable(t *testing.T) {
	jobs := []*jobletv1.Job{
		{Id: "1", Command: "echo", Args: []string{"hi"}, State: jobletv1.JobState_JOB_STATE_COMPLETED, StartTime: ts(0)},
		{Id: "10", Command: "printf", Args: []string{"\x1b[2J\tx"}, State: jobletv1.JobState_JOB_STATE_RUNNING, StartTime: ts(time.Hour)},
		{Id: "11", Command: "later", State: jobletv1.JobState_JOB_STATE_SCHEDULED},
	}
	got := render(t, func(b *strings.Builder) error { return Table(b, jobs) })
	want := "" +
		"ID  STATUS     START TIME            COMMAND\n" +
		"1   COMPLETED  2025-07-11T06:18:54Z  echo hi\n" +
		"10  RUNNING    2025-07-11T07:18:54Z  printf ^[[2J^Ix\n" +
		"11  SCHEDULED  -                     later\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := render(t, func(b *strings.Builder) error { return Table(b, nil) }); got != "No jobs found\n" {
		t.Errorf("empty table = %q", got)
	}
}

func TestStatus(t *testing.T) {
	j := &jobletv1.Job{
		Id: "7", Command: "stress", Args: []string{"--vm", "1"}, State: jobletv1.JobState_JOB_STATE_FAILED,
		CreateTime: ts(0), StartTime: ts(time.Second), EndTime: ts(3*time.Second + 250*time.Millisecond),
		ExitCode: 137, Signal: 9, Reason: "out of memory\x1b[0m", Network: "none", Hostname: "job-7",
		Limits: &jobletv1.Limits{MaxCpuPercent: 50, MaxMemoryMb: 256, CpuCores: "0-1"},
		Usage:  &jobletv1.Usage{CpuTimeUsec: 1234567, MemoryPeakBytes: 268435456, OomKills: 2},
	}
	got := render(t, func(b *strings.Builder) error { return Status(b, j, t0.Add(time.Hour)) })
	want := "Job ID: 7\nCommand: stress --vm 1\nStatus: FAILED\n" +
		"Created: 2025-07-11T06:18:54Z\nStarted: 2025-07-11T06:18:55Z\nEnded: 2025-07-11T06:18:57Z\n" +
		"Duration: 2.25s\nNetwork: none\nHostname: job-7\n" +
		"Max CPU: 50%\nMax Memory: 256 MB\nCPU Cores: 0-1\n" +
		"CPU Time: 1.235s\nPeak Memory: 256.0 MB\nOOM Kills: 2\n" +
		"Exit Code: 137\nSignal: 9\nReason: out of memory^[[0m\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	running := &jobletv1.Job{Id: "8", Command: "sleep", Args: []string{"60"}, State: jobletv1.JobState_JOB_STATE_RUNNING,
		CreateTime: ts(0), StartTime: ts(0), Limits: &jobletv1.Limits{MaxIoBps: 1048576, MaxPids: 32}}
	got = render(t, func(b *strings.Builder) error { return Status(b, running, t0.Add(90*time.Second)) })
	want = "Job ID: 8\nCommand: sleep 60\nStatus: RUNNING\n" +
		"Created: 2025-07-11T06:18:54Z\nStarted: 2025-07-11T06:18:54Z\nDuration: 1m30s\n" +
		"Max IO: 1048576 bytes/s\nMax PIDs: 32\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestJSON(t *testing.T) {
	j := &jobletv1.Job{Id: "1", Command: "echo", Args: []string{"\x1b"}, State: jobletv1.JobState_JOB_STATE_COMPLETED,
		StartTime: ts(0), EndTime: ts(time.Second), Limits: &jobletv1.Limits{MaxMemoryMb: 64},
		Usage: &jobletv1.Usage{CpuTimeUsec: 1500, MemoryPeakBytes: 4096}}
	got := render(t, func(b *strings.Builder) error { return StatusJSON(b, j) })
	want := `{
  "id": "1",
  "command": "echo",
  "args": [
    "\u001b"
  ],
  "status": "COMPLETED",
  "start_time": "2025-07-11T06:18:54Z",
  "end_time": "2025-07-11T06:18:55Z",
  "exit_code": 0,
  "limits": {
    "max_memory_mb": 64
  },
  "usage": {
    "cpu_time_usec": 1500,
    "memory_peak_bytes": 4096,
    "oom_kills": 0
  }
}
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := render(t, func(b *strings.Builder) error { return ListJSON(b, nil) }); got != "[]\n" {
		t.Errorf("empty list = %q", got)
	}
}

func TestNodes(t *testing.T) {
	got := render(t, func(b *strings.Builder) error {
		return Nodes(b, []Node{{"default", "192.168.1.100:50051"}, {"production", "prod.example.com:50051"}}, "production")
	})
	want := "Available nodes in configuration:\n  - default (192.168.1.100:50051)\n  * production (prod.example.com:50051)\n"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestState(t *testing.T) {
	if got := State(jobletv1.JobState_JOB_STATE_CANCELED); got != "CANCELED" {
		t.Errorf("State(CANCELED) = %q", got)
	}
	if got := State(jobletv1.JobState(99)); got != "UNKNOWN" {
		t.Errorf("State(99) = %q", got)
	}
}

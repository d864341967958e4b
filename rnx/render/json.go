package render

import (
	"encoding/json"
	"io"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// JobJSON is the stable JSON shape of a job for scripts: snake_case keys,
// state names as in the table, RFC3339 UTC times (with the fraction of a
// second when there is one, so scripts can compare them exactly), empty
// fields left out.
// encoding/json escapes control characters, so it is terminal-safe too.
type JobJSON struct {
	ID         string   `json:"id"`
	Name       string   `json:"name,omitempty"`
	Command    string   `json:"command"`
	Args       []string `json:"args"`
	Status     string   `json:"status"`
	CreateTime string   `json:"create_time,omitempty"`
	StartTime  string   `json:"start_time,omitempty"`
	EndTime    string   `json:"end_time,omitempty"`
	ExitCode   *int32   `json:"exit_code,omitempty"`
	Signal     int32    `json:"signal,omitempty"`
	Reason     string   `json:"reason,omitempty"`
	Network    string   `json:"network,omitempty"`
	IPAddress  string   `json:"ip_address,omitempty"`
	Hostname   string   `json:"hostname,omitempty"`
	// ScheduleInput and ScheduledTime are set on scheduled jobs.
	ScheduleInput string      `json:"schedule_input,omitempty"`
	ScheduledTime string      `json:"scheduled_time,omitempty"`
	Limits        *LimitsJSON `json:"limits,omitempty"`
	Usage         *UsageJSON  `json:"usage,omitempty"`
}

// UsageJSON is the JSON shape of what a job used, once known.
type UsageJSON struct {
	CPUTimeUsec     int64 `json:"cpu_time_usec"`
	MemoryPeakBytes int64 `json:"memory_peak_bytes"`
	OOMKills        int64 `json:"oom_kills"`
}

// LimitsJSON is the JSON shape of a job's limits.
type LimitsJSON struct {
	MaxCPUPercent int32  `json:"max_cpu_percent,omitempty"`
	MaxMemoryMB   int32  `json:"max_memory_mb,omitempty"`
	MaxIOBPS      int64  `json:"max_io_bps,omitempty"`
	CPUCores      string `json:"cpu_cores,omitempty"`
	MaxPIDs       int32  `json:"max_pids,omitempty"`
}

// ToJSON converts a job to its JSON shape; the exit code is present only
// once the job has ended.
func ToJSON(j *jobletv1.Job) JobJSON {
	out := JobJSON{
		ID:            j.GetId(),
		Name:          j.GetName(),
		Command:       j.GetCommand(),
		Args:          j.GetArgs(),
		Status:        State(j.GetState()),
		CreateTime:    exactTime(j.GetCreateTime()),
		StartTime:     exactTime(j.GetStartTime()),
		EndTime:       exactTime(j.GetEndTime()),
		Signal:        j.GetSignal(),
		Reason:        j.GetReason(),
		Network:       j.GetNetwork(),
		IPAddress:     j.GetIpAddress(),
		Hostname:      j.GetHostname(),
		ScheduleInput: j.GetScheduleInput(),
		ScheduledTime: exactTime(j.GetScheduledTime()),
	}
	if out.Args == nil {
		out.Args = []string{}
	}
	if Ended(j.GetState()) {
		code := j.GetExitCode()
		out.ExitCode = &code
	}
	if l := j.GetLimits(); l != nil {
		lj := LimitsJSON{l.GetMaxCpuPercent(), l.GetMaxMemoryMb(), l.GetMaxIoBps(), l.GetCpuCores(), l.GetMaxPids()}
		if lj != (LimitsJSON{}) {
			out.Limits = &lj
		}
	}
	if u := j.GetUsage(); u != nil {
		out.Usage = &UsageJSON{u.GetCpuTimeUsec(), u.GetMemoryPeakBytes(), u.GetOomKills()}
	}
	return out
}

// exactTime formats a timestamp as RFC3339 in UTC with its fraction of a
// second, "" when unset.
func exactTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Format(time.RFC3339Nano)
}

// ListJSON writes jobs as an indented JSON array ("[]" when empty).
func ListJSON(w io.Writer, jobs []*jobletv1.Job) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	list := make([]JobJSON, len(jobs))
	for i, j := range jobs {
		list[i] = ToJSON(j)
	}
	return enc.Encode(list)
}

// StatusJSON writes one job as an indented JSON object.
func StatusJSON(w io.Writer, j *jobletv1.Job) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(ToJSON(j))
}

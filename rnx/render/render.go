// Package render formats jobs for people and for scripts: the header rnx run
// prints, the list table, the status page, JSON, and the node list. Every
// piece of job-provided text (command, name, reason) goes through termsafe,
// so what a job chose cannot drive the terminal.
package render

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/rnx/termsafe"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// State is the short name of a job state, as shown to users: "RUNNING".
func State(s jobletv1.JobState) string {
	if name, ok := jobletv1.JobState_name[int32(s)]; ok && s != jobletv1.JobState_JOB_STATE_UNSPECIFIED {
		return strings.TrimPrefix(name, "JOB_STATE_")
	}
	return "UNKNOWN"
}

// Ended reports whether a job is in a final state.
func Ended(s jobletv1.JobState) bool {
	switch s {
	case jobletv1.JobState_JOB_STATE_COMPLETED, jobletv1.JobState_JOB_STATE_FAILED,
		jobletv1.JobState_JOB_STATE_STOPPED, jobletv1.JobState_JOB_STATE_CANCELED:
		return true
	}
	return false
}

// CommandLine is the job's command and arguments joined by spaces, made safe
// for a terminal.
func CommandLine(j *jobletv1.Job) string {
	return termsafe.String(strings.Join(append([]string{j.GetCommand()}, j.GetArgs()...), " "))
}

// Time formats a timestamp as RFC3339 in UTC, "" when unset.
func Time(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

// Header writes what rnx run prints about a job it started: the ID on a line
// of its own first, so scripts can pick it out.
func Header(w io.Writer, j *jobletv1.Job) error {
	var b strings.Builder
	fmt.Fprintf(&b, "ID: %s\n", termsafe.String(j.GetId()))
	if j.GetName() != "" {
		fmt.Fprintf(&b, "Name: %s\n", termsafe.String(j.GetName()))
	}
	fmt.Fprintf(&b, "Command: %s\n", CommandLine(j))
	fmt.Fprintf(&b, "Status: %s\n", State(j.GetState()))
	if in := j.GetScheduleInput(); in != "" {
		fmt.Fprintf(&b, "Schedule Input: %s\n", termsafe.String(in))
	}
	if t := Time(j.GetScheduledTime()); t != "" {
		fmt.Fprintf(&b, "Scheduled Time: %s\n", t)
	}
	if t := Time(j.GetStartTime()); t != "" {
		fmt.Fprintf(&b, "StartTime: %s\n", t)
	}
	if j.GetNetwork() != "" {
		fmt.Fprintf(&b, "Network: %s\n", termsafe.String(j.GetNetwork()))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Table writes the job list as aligned columns, or "No jobs found".
func Table(w io.Writer, jobs []*jobletv1.Job) error {
	if len(jobs) == 0 {
		_, err := io.WriteString(w, "No jobs found\n")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tSTART TIME\tCOMMAND")
	for _, j := range jobs {
		start := Time(j.GetStartTime())
		if j.GetState() == jobletv1.JobState_JOB_STATE_SCHEDULED {
			start = Time(j.GetScheduledTime()) // when it will start
		}
		if start == "" {
			start = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", termsafe.String(j.GetId()), State(j.GetState()), start, CommandLine(j))
	}
	return tw.Flush()
}

// Status writes one job's record as "Key: value" lines. now measures the
// duration of a job that is still running.
func Status(w io.Writer, j *jobletv1.Job, now time.Time) error {
	var b strings.Builder
	line := func(key, value string) {
		if value != "" {
			fmt.Fprintf(&b, "%s: %s\n", key, value)
		}
	}
	line("Job ID", termsafe.String(j.GetId()))
	line("Name", termsafe.String(j.GetName()))
	line("Command", CommandLine(j))
	line("Status", State(j.GetState()))
	line("Created", Time(j.GetCreateTime()))
	line("Schedule Input", termsafe.String(j.GetScheduleInput()))
	line("Scheduled Time", Time(j.GetScheduledTime()))
	line("Started", Time(j.GetStartTime()))
	line("Ended", Time(j.GetEndTime()))
	if start := j.GetStartTime(); start != nil {
		end := now
		if j.GetEndTime() != nil {
			end = j.GetEndTime().AsTime()
		}
		line("Duration", end.Sub(start.AsTime()).Round(time.Millisecond).String())
	}
	line("Network", termsafe.String(j.GetNetwork()))
	line("IP Address", termsafe.String(j.GetIpAddress()))
	line("Hostname", termsafe.String(j.GetHostname()))
	l := j.GetLimits()
	line("Max CPU", positive(int64(l.GetMaxCpuPercent()), "%"))
	line("Max Memory", positive(int64(l.GetMaxMemoryMb()), " MB"))
	line("Max IO", positive(l.GetMaxIoBps(), " bytes/s"))
	line("CPU Cores", termsafe.String(l.GetCpuCores()))
	line("Max PIDs", positive(int64(l.GetMaxPids()), ""))
	if u := j.GetUsage(); u != nil {
		line("CPU Time", (time.Duration(u.GetCpuTimeUsec()) * time.Microsecond).Round(time.Millisecond).String())
		line("Peak Memory", megabytes(u.GetMemoryPeakBytes()))
		line("OOM Kills", positive(u.GetOomKills(), ""))
	}
	if Ended(j.GetState()) {
		line("Exit Code", strconv.Itoa(int(j.GetExitCode())))
		line("Signal", positive(int64(j.GetSignal()), ""))
	}
	line("Reason", termsafe.String(j.GetReason()))
	_, err := io.WriteString(w, b.String())
	return err
}

// megabytes shows a byte count in MB (2^20 bytes, the unit of --max-memory).
func megabytes(n int64) string {
	if n <= 0 {
		return ""
	}
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MB"
}

func positive(n int64, unit string) string {
	if n <= 0 {
		return ""
	}
	return strconv.FormatInt(n, 10) + unit
}

// Node is one entry of the node list.
type Node struct{ Name, Address string }

// Nodes writes the configured nodes, marking the selected one with "*".
func Nodes(w io.Writer, nodes []Node, selected string) error {
	var b strings.Builder
	b.WriteString("Available nodes in configuration:\n")
	for _, n := range nodes {
		mark := "-"
		if n.Name == selected {
			mark = "*"
		}
		fmt.Fprintf(&b, "  %s %s (%s)\n", mark, termsafe.String(n.Name), termsafe.String(n.Address))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

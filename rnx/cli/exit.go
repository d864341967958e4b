package cli

import (
	"fmt"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/rnx/termsafe"
)

// exitNotStarted is the exit code for a job that failed before its command
// ran, as a shell reports a command it could not execute.
const exitNotStarted = 127

// jobExit maps an ended job to rnx's exit code, and to a note for stderr
// when the code alone would not explain what happened.
//   - killed by signal N: 128+N, with the server's reason if it gave one;
//   - failed before its command ran (not started, or FAILED without an exit
//     code): its exit code if it has one, else 127, with the reason;
//   - canceled before it was due: 1;
//   - otherwise the command's own exit code, silently, as a shell would.
func jobExit(j *jobletv1.Job) (code int, note string) {
	id := termsafe.String(j.GetId())
	reason := termsafe.String(j.GetReason())
	switch {
	case j.GetSignal() > 0:
		code = 128 + int(j.GetSignal())
		if reason != "" {
			note = fmt.Sprintf("job %s was killed by signal %d: %s", id, j.GetSignal(), reason)
		}
	case j.GetState() == jobletv1.JobState_JOB_STATE_FAILED && (j.GetStartTime() == nil || j.GetExitCode() == 0):
		code = int(j.GetExitCode())
		if code == 0 {
			code = exitNotStarted
		}
		if reason == "" {
			reason = "no reason given"
		}
		note = fmt.Sprintf("job %s failed: %s", id, reason)
	case j.GetState() == jobletv1.JobState_JOB_STATE_CANCELED:
		code, note = 1, fmt.Sprintf("job %s was canceled", id)
	default:
		code = int(j.GetExitCode())
	}
	if code < 0 || code > 255 {
		code = 1
	}
	return code, note
}

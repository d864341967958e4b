package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/rnx/client"
	"github.com/joblet-dev/joblet/rnx/jobspec"
	"github.com/joblet-dev/joblet/rnx/render"
	"github.com/joblet-dev/joblet/rnx/termsafe"
)

// validJobID reports whether id looks like a job id: a letter or digit,
// then up to 63 letters, digits, '.', '_' or '-'. The server has the final
// word; this keeps garbage and control characters from reaching it.
func validJobID(id string) bool { return jobspec.IsName(id, 64, "._-") }

// idArg validates the one JOB_ID argument.
func idArg(cmd *cobra.Command, args []string) error {
	if err := exactArgs(1, "one JOB_ID")(cmd, args); err != nil {
		return err
	}
	if !validJobID(args[0]) {
		return &usageError{fmt.Errorf("invalid job id %q", termsafe.String(args[0]))}
	}
	return nil
}

func (a *app) listCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List all jobs",
		Args:  exactArgs(0, "no arguments"),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return a.withConn([]string{jobletv1.JobService_ListJobs_FullMethodName}, func(conn *client.Conn) error {
				var resp *jobletv1.ListJobsResponse
				err := a.retryUnavailable(cmd.Context(), conn, func() (err error) {
					resp, err = conn.ListJobs(cmd.Context(), &jobletv1.ListJobsRequest{})
					return err
				})
				if err != nil {
					return err
				}
				if asJSON {
					return render.ListJSON(a.env.Stdout, resp.GetJobs())
				}
				return render.Table(a.env.Stdout, resp.GetJobs())
			})
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

func (a *app) statusCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status JOB_ID",
		Short: "Show one job's status, times, limits and exit code",
		Args:  idArg,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.withConn([]string{jobletv1.JobService_GetJobStatus_FullMethodName}, func(conn *client.Conn) error {
				job, err := a.status(cmd.Context(), conn, args[0], 0)
				if err != nil {
					return err
				}
				if asJSON {
					return render.StatusJSON(a.env.Stdout, job)
				}
				return render.Status(a.env.Stdout, job, a.env.Now())
			})
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object")
	return cmd
}

func (a *app) logCommand() *cobra.Command {
	var follow, noFollow bool
	cmd := &cobra.Command{
		Use:   "log JOB_ID",
		Short: "Print a job's output, then follow it until the job ends",
		Long: `Print a job's output from the start, then follow it live until the job ends.
The job's stdout goes to stdout and its stderr to stderr, byte for byte.
With --follow=false (or --no-follow) print what there is and return.

A scheduled job that has not started has no output yet: rnx says when it is
due and returns, or, with an explicit --follow (-f), waits for it to start
and follows it.`,
		Args: idArg,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.withConn([]string{jobletv1.JobService_GetJobStatus_FullMethodName, jobletv1.JobService_GetJobLogs_FullMethodName}, func(conn *client.Conn) error {
				explicit := cmd.Flags().Changed("follow") && follow && !noFollow
				if more, err := a.awaitScheduled(cmd.Context(), conn, args[0], explicit); err != nil || !more {
					return err
				}
				out := a.newOutput()
				return errors.Join(a.follow(cmd.Context(), conn, args[0], follow && !noFollow, out), out.flush())
			})
		}),
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", true, "follow the output until the job ends")
	cmd.Flags().BoolVar(&noFollow, "no-follow", false, "print the output so far and return")
	return cmd
}

func (a *app) stopCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "stop JOB_ID",
		Short: "Stop a job (SIGTERM, then SIGKILL after the server's grace period)",
		Args:  idArg,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.withConn([]string{jobletv1.JobService_StopJob_FullMethodName}, func(conn *client.Conn) error {
				resp, err := conn.StopJob(cmd.Context(), &jobletv1.StopJobRequest{Id: args[0]})
				if err != nil {
					return conn.Explain(err)
				}
				_, err = fmt.Fprintln(a.env.Stdout, stopMessage(resp.GetJob()))
				return err
			})
		}),
	}
}

// stopMessage says what became of a job rnx stop was asked to stop.
func stopMessage(j *jobletv1.Job) string {
	id := termsafe.String(j.GetId())
	switch j.GetState() {
	case jobletv1.JobState_JOB_STATE_STOPPED:
		return fmt.Sprintf("Job %s stopped", id)
	case jobletv1.JobState_JOB_STATE_CANCELED:
		return fmt.Sprintf("Job %s canceled", id)
	case jobletv1.JobState_JOB_STATE_COMPLETED, jobletv1.JobState_JOB_STATE_FAILED:
		return fmt.Sprintf("Job %s had already ended (%s)", id, render.State(j.GetState()))
	}
	return fmt.Sprintf("Job %s is stopping (%s)", id, render.State(j.GetState()))
}

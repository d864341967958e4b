// Package shim keeps a job running, its output flowing to logd and its exit
// status recorded while the isolator is down or restarting: each job runs
// under a small supervisor process of its own, its shim (after
// containerd's).
//
// The shim is a small binary of its own, joblet-shim (package shimproc),
// found beside the isolator's executable and sealed in memory once (see
// UseBinary); when it is not installed there, the isolator's binary is
// re-executed from its sealed in-memory copy in shim mode (shimproc.IsShim
// is true and the daemon's main calls shimproc.Main first). It runs in the
// host's namespaces, in a session of its own, with no parent-death
// signal, outside the job's cgroup. The isolator and its shim talk over two pipes
// (descriptors, Spec, messages: package wire), and through one file for an
// isolator that is not there when the job ends:
//
//	isolator (Start)                           shim (shimproc.Main)
//	────────────────                           ────────────────────
//	fork+exec the sealed copy ───────────────▶ [with a spare (v1): make the
//	                                            output pipes, sandbox.Prefork
//	                                            in the spare]
//	[read fd 4 ◀─────────────────────────────   {"type":"waiting","pid":N}]
//	                                           read the Spec (JSON) on fd 3
//	                                           make the output pipes (if not
//	                                           yet), hand them to logd (which
//	                                           reads them),
//	                                           sandbox.Start, or the preforked
//	                                           init's Start (cgroup gate,
//	                                           netns, init = PID 1 of the job)
//	read fd 4 ◀──────────────────────────────  {"type":"started","pid":N}
//	  record shim + init identity                or {"type":"error",...}; close
//	  watch fd 4 and the shim's pidfd          wait for the job's init to
//	                                           report the command's exit
//	read fd 4 ◀──────────────────────────────  {"type":"exited"}
//	  release the job's network, workspace     read the cgroup's counters,
//	                                           wait for the output to reach
//	                                           logd (eof, fsynced)
//	read fd 4 ◀──────────────────────────────  {"type":"ended","result":{...}}
//	  record the job's end                     write the Result to
//	                                           <shims>/<id>.json (temp,
//	                                           rename: no fsync), close fd 4,
//	                                           exit 0
//	pidfd readable: reap the shim;
//	  Release: remove the file
//
// A shim may be started ahead of its job (Prestart; Pool keeps some
// waiting; on cgroup v1 with one thread in a spare cgroup that becomes its
// job's, and its job's init preforked there, see spawner.go): it then
// waits at its first step, and exits at once, having done nothing, if the
// spec pipe closes without a Spec (its preforked init exits at its gate
// and is reaped first). The isolator reaps its
// shims from the goroutine that watches their pidfd, so no OS thread waits
// for any of them.
//
// The job's end is known at "ended" (or at fd 4's EOF without it: the
// result file is read then), before the shim's own exit (its Go teardown,
// 1-2 ms): the shim is no part of the job. A shim that dies without a
// result closes fd 4 too, and Wait finds no result.
//
// A new isolator finds a running job's shim again by its pid and start
// time (Adopt): alive, it is watched again (its pidfd: the new isolator
// has no pipe to it); gone, its Result file tells how the job ended;
// neither, the job is lost.
package shim

import "github.com/joblet-dev/joblet/isolator/shim/wire"

// Spec is what a shim needs to start and follow one job.
type Spec = wire.Spec

// Placer is a job's cgroup that is made for a running shim (cgroup.Job):
// with the systemd driver the shim is the first process of the job's
// scope, which cannot exist before it.
type Placer = wire.Placer

// Result is how a job ended, as its shim records it.
type Result = wire.Result

// Usage is what a job used, as its shim read it from the job's cgroup.
type Usage = wire.Usage

// WriteResult replaces path with r: temporary file, rename, so a reader
// sees the whole result or none; not fsynced (wire.WriteResult says why).
func WriteResult(path string, r Result) error { return wire.WriteResult(path, r) }

// ReadResult reads the result at path; a missing one is os.ErrNotExist.
func ReadResult(path string) (Result, error) { return wire.ReadResult(path) }

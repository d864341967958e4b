// Package sandbox runs one job's command inside fresh Linux namespaces.
//
// Start executes a sealed in-memory copy of the init binary (UseInitBinary:
// cmd/joblet-sandbox-init, which links only this package) or else of the
// running binary, so a job cannot reach a daemon's executable through
// /proc/<pid>/exe, as the job's init: PID 1 of new PID, mount, UTS, IPC and network namespaces. The
// init builds a new root on a tmpfs (what every job has before its start
// gate, the job's own part after it: rootfs.go), pivot_roots into it, and
// starts the command; then it stays as PID 1, reaps orphans, forwards SIGTERM, SIGINT
// and SIGHUP to every process of the job, and reports the command's exit
// status. With UseReaperBinary it does that as a few KB of C instead: it
// execs the sealed reaper once the command runs (handover.go). When the command exits the init kills and reaps whatever is left
// in the PID namespace, reports, and exits; Process.Wait returns once the
// init is exiting, without waiting for the kernel to tear down its
// namespaces and mounts (see sync.go).
//
// What the job sees:
//   - only its own processes (a fresh /proc for its PID namespace, with
//     /proc/sys, /proc/sysrq-trigger, /proc/irq and /proc/bus read-only and
//     /proc/kcore, /proc/keys, /proc/timer_list and /proc/sched_debug masked);
//   - a root made of read-only, nosuid, nodev binds of the host's /usr (and
//     /bin, /sbin, /lib, /lib64, recreated as symlinks on merged-/usr hosts),
//     submounts included; a minimal generated /etc (passwd, group, hosts,
//     hostname, nsswitch.conf, and the host's resolv.conf); /work, the job's
//     writable workspace and working directory; a private, capped /tmp;
//     a minimal /dev (null, zero, full, random, urandom, tty, a private
//     devpts, /dev/shm); no /sys and no cgroupfs; the root itself read-only;
//   - a hostname of its own; a network namespace with only loopback up, or,
//     with Spec.NetnsPath, the namespace netd prepared for it (joined by the
//     parent before the init exists: see netns.go), with netd's resolv.conf
//     and hosts in its /etc;
//   - only the environment the caller gives, stdin from /dev/null, no
//     controlling terminal, and no file descriptor other than 0, 1 and 2.
//
// Mounts are made in the job's private mount namespace after making / private,
// so nothing propagates to the host and everything vanishes with the job.
//
// The command is started by a raw fork of the init (stage.go): with
// Spec.UserNS, in a user namespace of its own mapping its root to an
// unprivileged host range (userns.go), while the init and every other
// namespace of the job stay the host user namespace's. It runs with a
// small capability set (bounding, permitted, effective and inheritable
// alike), no_new_privs and a seccomp denylist answering EPERM (confine.go,
// seccomp.go); /tmp, and /work unless the caller leaves Spec.Work open, are
// capped tmpfs storage (rootfs.go), or for /work, with Spec.Work.Disk, a
// filesystem of the cap's size on a loop device of its own, which an IO
// limit can throttle (NewWorkDisk, workdisk.go). See docs/security.md.
//
// Resource limits: the caller creates the job's cgroup
// and passes it as Spec.Cgroup; Start puts the init in it before the init may
// do anything for the job (the start gate in sync.go).
package sandbox

/*
 * joblet-sandbox-reaper: a job's PID 1 once its command runs.
 *
 * The job's Go init (package sandbox) builds the sandbox and starts the
 * command, then replaces itself with this program (execveat of a sealed
 * copy, see handover.go), which does what the Go init would have done for
 * the rest of the job's life, at a fraction of its memory:
 *
 *   1. forwards SIGTERM, SIGINT and SIGHUP to every other process of the
 *      namespace (kill(-1));
 *   2. reaps every child (the command, and the orphans the kernel reparents
 *      to PID 1) until the command exits;
 *   3. kills and reaps everything left in the namespace;
 *   4. writes the exit message on the sync pipe (fd 4), byte for byte what
 *      the Go init's json.Encoder writes for sandbox's message type;
 *   5. exits.
 *
 * Usage (by the init only): argv = { "joblet-sandbox-reaper", "<command pid>" }.
 * It starts with SIGTERM, SIGINT and SIGHUP blocked (the init blocks them
 * before the exec, and a blocked signal stays pending across execve): they
 * are never given a handler here, only taken with sigtimedwait, so none is
 * lost between the init and this program.
 *
 * No libc: a handful of raw system calls, so the binary is a few KB and its
 * resident memory a few pages, once per running job.
 *
 * It has a second use, for the job's shim (package shimproc, park.go): a
 * shim whose job runs on parks by replacing itself with this program, which
 * waits, at the same few pages, until the init reports on its message pipe
 * or logd answers on the hand-over connection (or either goes away), then
 * replaces itself with the shim again, which takes the job back.
 *
 * Usage (by a shim only): argv = { "joblet-shim", "park", "<sync fd>",
 * "<logd connection fd>", "<shim binary fd>" }; the environment is passed
 * on to the shim unchanged.
 */

typedef unsigned long ulong;

#if defined(__x86_64__)
enum {
	NR_write = 1,
	NR_rt_sigprocmask = 14,
	NR_wait4 = 61,
	NR_kill = 62,
	NR_prctl = 157,
	NR_rt_sigtimedwait = 128,
	NR_exit_group = 231,
	NR_ppoll = 271,
	NR_execveat = 322,
};

static long sys5(long n, long a, long b, long c, long d, long e)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
			 : "rcx", "r11", "memory");
	return ret;
}

/* The kernel enters at _start with argc at the stack pointer. */
__asm__(".text\n"
	".global _start\n"
	"_start:\n"
	"	xor %rbp, %rbp\n"
	"	mov %rsp, %rdi\n"
	"	and $-16, %rsp\n"
	"	call reaper_main\n"
	"	hlt\n");
#elif defined(__aarch64__)
enum {
	NR_write = 64,
	NR_rt_sigprocmask = 135,
	NR_wait4 = 260,
	NR_kill = 129,
	NR_prctl = 167,
	NR_rt_sigtimedwait = 137,
	NR_exit_group = 94,
	NR_ppoll = 73,
	NR_execveat = 281,
};

static long sys5(long n, long a, long b, long c, long d, long e)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	register long x4 __asm__("x4") = e;
	__asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4) : "memory");
	return x0;
}

__asm__(".text\n"
	".global _start\n"
	"_start:\n"
	"	mov x29, #0\n"
	"	mov x30, #0\n"
	"	mov x0, sp\n"
	"	bl reaper_main\n");
#else
#error "joblet-sandbox-reaper: unsupported architecture"
#endif

enum {
	SIGHUP = 1,
	SIGINT = 2,
	SIGKILL = 9,
	SIGPIPE = 13,
	SIGTERM = 15,
	SIGCHLD = 17,
	SIG_BLOCK = 0,
	PR_SET_NAME = 15,
	PR_SET_DUMPABLE = 4,
	WNOHANG = 1,
	EINTR = 4,
	ECHILD = 10,
	FD_SYNC = 4, /* sandbox's fdSync */
	POLLIN = 1,
	AT_EMPTY_PATH = 0x1000,
};

static long sys(long n, long a, long b, long c, long d)
{
	return sys5(n, a, b, c, d, 0);
}

#define BIT(sig) (1UL << ((sig) - 1))

/* The signals forwarded to the job (the Go init's signal.Notify set). */
static const ulong forwarded = BIT(SIGTERM) | BIT(SIGINT) | BIT(SIGHUP);

static void exit_group(int code)
{
	for (;;)
		sys(NR_exit_group, code, 0, 0, 0);
}

/* write_all writes n bytes of b to fd; a gone reader (EPIPE) ends it. */
static void write_all(int fd, const char *b, long n)
{
	while (n > 0) {
		long w = sys(NR_write, fd, (long)b, n, 0);
		if (w == -EINTR)
			continue;
		if (w <= 0)
			return;
		b += w;
		n -= w;
	}
}

/* put_uint appends the decimal digits of v at p; returns the new end. */
static char *put_uint(char *p, unsigned v)
{
	char d[10];
	int n = 0;
	do {
		d[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = d[--n];
	return p;
}

static char *put_str(char *p, const char *s)
{
	while (*s)
		*p++ = *s++;
	return p;
}

/*
 * report writes the exit message for wait status ws, as the Go init does:
 * exit_code is WEXITSTATUS (-1 when not exited, which wait4 without
 * WUNTRACED only returns for a signal), or 128+signal when killed by one;
 * json's omitempty leaves out the zero fields; the encoder ends with '\n'.
 */
static void report(int ws)
{
	char b[64], *p = b;
	int sig = ws & 0x7f;
	int code;
	if (sig == 0)
		code = (ws >> 8) & 0xff; /* exited */
	else
		code = 128 + sig; /* killed (0x7f, stopped, cannot come here) */
	p = put_str(p, "{\"type\":\"exit\"");
	if (code) {
		p = put_str(p, ",\"exit_code\":");
		p = put_uint(p, (unsigned)code);
	}
	if (sig) {
		p = put_str(p, ",\"signal\":");
		p = put_uint(p, (unsigned)sig);
	}
	p = put_str(p, "}\n");
	write_all(FD_SYNC, b, p - b);
}

/*
 * end_namespace kills every other process of the PID namespace and reaps
 * them all, as sandbox.endNamespace: once it returns, nothing of the job
 * runs any more.
 */
static void end_namespace(void)
{
	sys(NR_kill, -1, SIGKILL, 0, 0);
	for (;;) {
		long r = sys(NR_wait4, -1, 0, 0, 0);
		if (r == -EINTR)
			continue;
		if (r < 0) /* ECHILD: nobody left but this process */
			return;
	}
}

/* parse_uint reads a decimal number; -1 unless s is one. */
static long parse_uint(const char *s)
{
	long v = 0;
	if (*s == 0)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > 1 << 20)
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v;
}

static int same(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

/*
 * park is a parked shim (see the top): it waits for either descriptor to
 * be readable or hung up, then execs the shim binary again with the same
 * environment. The shim's signal dispositions (SIGHUP, SIGINT and SIGPIPE
 * ignored) came through the exec and go on through the next one. Should
 * that exec fail, nothing can take the job back: the shim's exit tells the
 * isolator it ended without a result.
 */
static void park(char **argv, char **envp)
{
	long sync = parse_uint(argv[2]), conn = parse_uint(argv[3]), exe = parse_uint(argv[4]);
	if (sync < 0 || conn < 0 || exe < 0)
		exit_group(3);
	sys(NR_prctl, PR_SET_NAME, (long)"joblet-shim", 0, 0);
	struct {
		int fd;
		short events, revents;
	} fds[2] = {{(int)sync, POLLIN, 0}, {(int)conn, POLLIN, 0}};
	for (;;) {
		long n = sys(NR_ppoll, (long)fds, 2, 0, 0);
		if (n != -EINTR)
			break; /* ready, or an error that another poll would repeat */
	}
	static char *shim_argv[] = {"joblet-shim", 0};
	sys5(NR_execveat, exe, (long)"", (long)shim_argv, (long)envp, AT_EMPTY_PATH);
	exit_group(3);
}

void reaper_main(long *sp) __attribute__((noreturn, used));

void reaper_main(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	if (argc == 5 && same(argv[0], "joblet-shim") && same(argv[1], "park"))
		park(argv, argv + argc + 1);
	/*
	 * First: exec made this process dumpable again, and it runs as the
	 * host's root in the job's namespaces. Non-dumpable, nobody but the
	 * host's root may ptrace it or open its /proc files.
	 */
	sys(NR_prctl, PR_SET_DUMPABLE, 0, 0, 0);
	/* Started from a memfd descriptor, its comm would be that number. */
	sys(NR_prctl, PR_SET_NAME, (long)"joblet-reaper", 0, 0);

	/*
	 * SIGCHLD is blocked before the first reap below, so a child that exits
	 * after that reap leaves it pending for sigtimedwait. SIGPIPE blocked:
	 * a write to a gone parent fails with EPIPE instead of (the kernel
	 * would drop it for a namespace's init anyway, but this says so).
	 */
	ulong mask = forwarded | BIT(SIGCHLD) | BIT(SIGPIPE);
	sys(NR_rt_sigprocmask, SIG_BLOCK, (long)&mask, 0, sizeof mask);

	long main_pid = 0;
	if (argc == 2) {
		for (const char *c = argv[1]; *c >= '0' && *c <= '9'; c++)
			main_pid = main_pid * 10 + (*c - '0');
	}
	if (main_pid <= 0) {
		/* Not started by the init as it should be: end the job. */
		end_namespace();
		report(SIGKILL);
		exit_group(1);
	}

	ulong waitset = forwarded | BIT(SIGCHLD);
	for (;;) {
		/* Reap whatever has exited: the command, or orphans. */
		for (;;) {
			int ws = 0;
			long pid = sys(NR_wait4, -1, (long)&ws, WNOHANG, 0);
			if (pid == -EINTR)
				continue;
			if (pid == main_pid) {
				end_namespace();
				report(ws);
				exit_group(0);
			}
			if (pid == -ECHILD) {
				/*
				 * The command gone unseen cannot happen while this
				 * process is its parent; as the Go init's reap,
				 * report it killed.
				 */
				end_namespace();
				report(SIGKILL);
				exit_group(0);
			}
			if (pid <= 0)
				break; /* 0: children left, none exited */
		}
		/* siginfo_t is 128 bytes; only its first int, the signal, matters. */
		int info[32];
		long sig = sys(NR_rt_sigtimedwait, (long)&waitset, (long)info, 0, sizeof waitset);
		if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP)
			sys(NR_kill, -1, sig, 0, 0); /* every process but this one */
	}
}

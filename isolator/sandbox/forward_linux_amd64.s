#include "textflag.h"

// The handover's signal handler (handover.go), entered by the kernel with
// the C calling convention, on the thread's alternate signal stack: it
// forwards the signal (DI) to every other process of the namespace,
// kill(-1, sig), and returns through forwardReturn. No Go code, no stack
// of its own: it may run on any thread, in any state of the runtime.
TEXT ·forwardSignal(SB),NOSPLIT|NOFRAME,$0
	MOVQ	DI, SI
	MOVQ	$-1, DI
	MOVQ	$62, AX // SYS_kill
	SYSCALL
	RET

// The handler's return (sa_restorer): rt_sigreturn.
TEXT ·forwardReturn(SB),NOSPLIT|NOFRAME,$0
	MOVQ	$15, AX // SYS_rt_sigreturn
	SYSCALL
	INT	$3

// func forwarderPCs() (handler, restorer uintptr)
//
// The addresses of the two above, as the kernel is to jump to them (not
// those of ABI wrappers).
TEXT ·forwarderPCs(SB),NOSPLIT,$0-16
	LEAQ	·forwardSignal(SB), AX
	MOVQ	AX, handler+0(FP)
	LEAQ	·forwardReturn(SB), AX
	MOVQ	AX, restorer+8(FP)
	RET

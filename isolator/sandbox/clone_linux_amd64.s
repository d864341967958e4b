#include "textflag.h"

// func cloneChild(flags uintptr) (pid uintptr, err syscall.Errno)
//
// clone(flags, 0, 0, 0, 0). A CLONE_VM child runs on this stack until its
// execve: the return address is kept in R12, out of its reach, across the
// system call, and this function has no frame of its own.
TEXT ·cloneChild(SB),NOSPLIT|NOFRAME,$0-24
	MOVQ	flags+0(FP), DI
	XORQ	SI, SI
	XORQ	DX, DX
	XORQ	R10, R10
	XORQ	R8, R8
	MOVQ	$56, AX // SYS_clone
	POPQ	R12
	SYSCALL
	PUSHQ	R12
	CMPQ	AX, $0xfffffffffffff001
	JLS	ok
	NEGQ	AX
	MOVQ	$0, pid+8(FP)
	MOVQ	AX, err+16(FP)
	RET
ok:
	MOVQ	AX, pid+8(FP)
	MOVQ	$0, err+16(FP)
	RET

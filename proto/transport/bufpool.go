package transport

import (
	"sync"

	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
)

var installPool sync.Once

// InstallBufferPool makes gRPC's buffer pool process-wide a pool with a tier
// at every power of two from 256 B to 1 MiB (above that, plain allocation).
//
// gRPC's default pool jumps from 32 KiB to 1 MiB and zeroes every buffer it
// hands out, and its proto codec always uses that default pool, so a message
// carrying a log chunk of 32 to 64 KiB cost a 1 MiB clear on each side of
// each hop: about half the CPU of the log path. With a tier at every power of
// two the waste is bounded at twice the message.
//
// The setting is process-wide and unsynchronised inside gRPC: call this from
// an init function, before any gRPC code runs. Later calls do nothing.
func InstallBufferPool() {
	installPool.Do(func() {
		p, err := mem.NewBinaryTieredBufferPool(8, 10, 12, 13, 14, 15, 16, 17, 18, 19, 20)
		if err != nil {
			panic(err) // the exponents are constants; this cannot fail at run time
		}
		experimental.SetDefaultBufferPool(p)
	})
}

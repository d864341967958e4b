package logstream

import "sync"

// ChunkBufferSize is the capacity of a recycled chunk buffer: logd's largest
// chunk (64 KiB less a little) fits.
const ChunkBufferSize = 64 << 10

// buffers holds the data buffers of chunks already written out. Without them
// rnx allocated, cleared and later collected a fresh buffer per received
// chunk: a GiB of output was a GiB of garbage.
var buffers = sync.Pool{New: func() any { b := make([]byte, 0, ChunkBufferSize); return &b }}

// ChunkBuffer returns a buffer of n bytes for a received chunk's data, whose
// contents are undefined: the caller fills all of it. Copy hands it back
// once the chunk is written. Data larger than ChunkBufferSize gets a buffer
// of its own that is left to the garbage collector.
func ChunkBuffer(n int) []byte {
	if n > ChunkBufferSize {
		return make([]byte, n)
	}
	return (*buffers.Get().(*[]byte))[:n]
}

// recycle takes back a chunk's data once written. Only a slice that starts a
// buffer of ChunkBufferSize, as ChunkBuffer returns them, is taken: a chunk
// trimmed on resume (Tracker) starts inside one, and data built elsewhere
// has another capacity; both are left to the garbage collector.
func recycle(data []byte) {
	if cap(data) == ChunkBufferSize {
		b := data[:0]
		buffers.Put(&b)
	}
}

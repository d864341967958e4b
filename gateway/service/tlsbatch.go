package service

import (
	"net"
	"sync"
)

// Go's crypto/tls writes every record with its own write to the connection
// under it: a 256 KiB write of gRPC's framer (a job's output going to rnx)
// becomes 16 records of 16 KiB and 16 write system calls, each a pass through
// the whole TCP stack, which was a fifth of the gateway's CPU while a log
// streamed. The two types below gather the records of one large write and
// hand them to the kernel in one write. The bytes on the wire, and TLS
// itself, are unchanged: only how many system calls carry them.

// batchMin is the smallest write worth gathering: up to one record's worth
// goes out as a single record anyway.
const batchMin = 16 << 10

// batchMax bounds what a batch holds before it is written out early, so a
// larger write than gRPC's framer makes still does not grow the buffer.
const batchMax = 512 << 10

// batchBufs are the batches' buffers: a connection holds one only while a
// write is in progress, so idle clients hold none.
var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, batchMax+batchMin); return &b }}

// recordBatcher is the connection under TLS. While a batch is open it keeps
// what TLS writes (whole records, in order) and writes them when the batch
// ends; otherwise it writes through. Records other goroutines write during a
// batch (an alert, a key update) join it in the order TLS wrote them.
type recordBatcher struct {
	net.Conn

	mu  sync.Mutex
	buf *[]byte // the open batch; nil when none is open
}

// Write implements net.Conn.
func (c *recordBatcher) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf == nil {
		return c.Conn.Write(p)
	}
	*c.buf = append(*c.buf, p...)
	if len(*c.buf) >= batchMax {
		if err := c.writeLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// begin opens a batch.
func (c *recordBatcher) begin() {
	c.mu.Lock()
	c.buf = batchBufs.Get().(*[]byte)
	c.mu.Unlock()
}

// end writes what the batch holds and closes it.
func (c *recordBatcher) end() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.writeLocked()
	*c.buf = (*c.buf)[:0]
	batchBufs.Put(c.buf)
	c.buf = nil
	return err
}

// writeLocked writes the batch's bytes out; c.mu is held.
func (c *recordBatcher) writeLocked() error {
	if len(*c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(*c.buf)
	*c.buf = (*c.buf)[:0]
	return err
}

// batchedConn is the TLS connection as gRPC uses it: a write of more than
// one record goes through TLS inside a batch of its recordBatcher.
type batchedConn struct {
	net.Conn // the TLS connection
	raw      *recordBatcher

	mu sync.Mutex // one batch at a time (TLS serialises writes anyway)
}

// Write implements net.Conn. TLS has encrypted and written every record of
// p to the batch when it returns; the batch then goes out in one write. An
// error from that write is the call's, with nothing reported written: the
// connection is then broken, as after any failed write.
func (c *batchedConn) Write(p []byte) (int, error) {
	if len(p) <= batchMin {
		return c.Conn.Write(p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.raw.begin()
	n, err := c.Conn.Write(p)
	if endErr := c.raw.end(); endErr != nil && err == nil {
		return 0, endErr
	}
	return n, err
}

package logstream

import jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"

// Tracker lets a follower reconnect without repeating output. A chunk's
// offset counts the bytes of both streams before it; a new GetJobLogs
// stream starts again from the beginning, so after a reconnect the Tracker
// drops what was already delivered. It trusts offsets only if every chunk
// of the first stream carried the offset it expected; otherwise CanResume
// is false and the caller must not reconnect.
type Tracker struct {
	next    int64 // offset of the first byte not yet delivered
	resumed bool  // streams after the first must be trimmed
	bad     bool  // the server's offsets did not add up
}

// Wrap returns a Receiver over r that records, or after the first stream
// trims, by offset. Call Wrap once per stream, in order.
func (t *Tracker) Wrap(r Receiver) Receiver {
	w := &tracked{r: r, t: t, trim: t.resumed}
	t.resumed = true
	return w
}

// CanResume reports whether a new stream can pick up where this one ended.
func (t *Tracker) CanResume() bool { return !t.bad }

type tracked struct {
	r    Receiver
	t    *Tracker
	trim bool
}

func (w *tracked) Recv() (*jobletv1.LogChunk, error) {
	for {
		c, err := w.r.Recv()
		if err != nil {
			return nil, err
		}
		start, end := c.GetOffset(), c.GetOffset()+int64(len(c.GetData()))
		if !w.trim {
			if start != w.t.next {
				w.t.bad = true
			}
			w.t.next = end
			return c, nil
		}
		if end <= w.t.next {
			continue // delivered before the reconnect
		}
		if start < w.t.next {
			c = &jobletv1.LogChunk{Stream: c.GetStream(), Offset: w.t.next, Data: c.GetData()[w.t.next-start:]}
		}
		w.t.next = end
		return c, nil
	}
}

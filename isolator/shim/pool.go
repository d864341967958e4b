package shim

import (
	"fmt"
	"sync"
)

// Pool keeps shims started ahead of their jobs (Idle), so that a job's
// start does not wait for a shim's fork, exec and Go runtime start (5–6 ms,
// on the latency path of every job, after its record, network and cgroup
// are made). A job takes a waiting shim, and a replacement is started in
// the background once that job's shim reported its start, so that it does
// not compete for the CPU with the start it replaces.
type Pool struct {
	size int

	mu      sync.Mutex
	idle    []*Idle
	filling bool // a fill goroutine runs
	closed  bool
	fills   sync.WaitGroup
}

// NewPool returns a pool that keeps size shims waiting, and starts the
// first ones in the background.
func NewPool(size int) *Pool {
	p := &Pool{size: size}
	p.mu.Lock()
	p.fillLocked()
	p.mu.Unlock()
	return p
}

// Start starts spec's job under a waiting shim, or under a new one when
// none waits (all taken, or the pool is closed), as the package's Start.
func (p *Pool) Start(spec Spec) (*Process, error) {
	defer p.fill()
	w := p.take()
	if w == nil {
		var err error
		if w, err = Prestart(); err != nil {
			return nil, fmt.Errorf("shim for job %s: %w", spec.ID, err)
		}
	}
	return w.Start(spec)
}

// take returns a waiting shim that is still alive, or nil. A shim that died
// while it waited (killed by someone) is never handed out: it is closed
// (reaped) and the next one taken.
func (p *Pool) take() *Idle {
	p.mu.Lock()
	var dead []*Idle
	var w *Idle
	for w == nil && len(p.idle) > 0 {
		c := p.idle[0]
		p.idle = p.idle[1:]
		if c.Alive() {
			w = c
		} else {
			dead = append(dead, c)
		}
	}
	p.mu.Unlock()
	for _, d := range dead {
		d.Close()
	}
	return w
}

// fill starts shims in the background until size wait, unless a fill runs
// already or the pool is closed.
func (p *Pool) fill() {
	p.mu.Lock()
	p.fillLocked()
	p.mu.Unlock()
}

func (p *Pool) fillLocked() {
	if p.closed || p.filling || len(p.idle) >= p.size {
		return
	}
	p.filling = true
	p.fills.Add(1)
	go func() {
		defer p.fills.Done()
		for {
			// An error is not kept: the next job starts a shim of its own,
			// and that start reports it.
			w, err := Prestart()
			p.mu.Lock()
			if err != nil || p.closed {
				p.filling = false
				p.mu.Unlock()
				if w != nil {
					w.Close()
				}
				return
			}
			p.idle = append(p.idle, w)
			if len(p.idle) >= p.size {
				p.filling = false
				p.mu.Unlock()
				return
			}
			p.mu.Unlock()
		}
	}()
}

// Close stops the waiting shims and returns once they are reaped; a fill
// under way is waited for, and its shim stopped too. Start still works
// after Close, with a new shim each time.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	p.fills.Wait()
	for _, w := range idle {
		w.Close()
	}
}

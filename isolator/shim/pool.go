package shim

import (
	"fmt"
	"sync"
)

// Pool keeps shims started ahead of their jobs (Idle), so that a job's
// start does not wait for a shim's fork, exec and Go runtime start (5–6 ms,
// on the latency path of every job, after its record, network and cgroup
// are made). A job given a waiting shim starts a replacement in the
// background as its start begins (StartWith). A refill (the new shim's Go
// start, its thread's move into its spare, the init's prefork: 3–7 ms,
// more under load) outlasts a short job's run and end: begun only once the
// job had started, it was often not over when the next job came, 1–2 ms
// after the previous end in the bench, and every other sequential job
// found no shim waiting and started one on its path. So the refill
// competes for the CPU with the job's start rather than with its end.
//
// With Spares set (cgroup v1), each waiting shim is paired with a spare
// cgroup it waits in, made before it (see Spare): the pool owns the pair
// until Take hands it to a job, or Close, or its shim dying, removes both.
type Pool struct {
	size int

	mu      sync.Mutex
	idle    []*Idle
	spares  Spares // nil: shims wait without a spare
	gen     int    // bumped by UseSpares: older waiting shims are replaced
	filling bool   // a fill goroutine runs
	closed  bool
	fills   sync.WaitGroup
}

// Spares makes the spare cgroups the pool's shims wait in.
type Spares interface {
	NewSpare() (Spare, error)
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

// UseSpares makes the shims that wait from now on wait in a spare cgroup
// made by s (nil: none). Shims already waiting are replaced. Call it once
// the spares of an earlier run are removed.
func (p *Pool) UseSpares(s Spares) {
	p.mu.Lock()
	p.spares = s
	p.gen++
	old := p.idle
	p.idle = nil
	p.fillLocked()
	p.mu.Unlock()
	for _, w := range old {
		_ = w.Close()
	}
}

// Start starts spec's job under a waiting shim, or under a new one when
// none waits (all taken, or the pool is closed), as the package's Start.
func (p *Pool) Start(spec Spec) (*Process, error) {
	return p.StartWith(p.Take(), spec)
}

// StartWith starts spec's job under w, a shim Take returned, or under a
// new one when w is nil, as the package's Start. The pool is filled
// again: from now on when w is a waiting shim (see Pool), else once the
// job's own shim is started, which the fill would delay.
func (p *Pool) StartWith(w *Idle, spec Spec) (*Process, error) {
	if w != nil {
		p.fill()
	} else {
		defer p.fill()
	}
	if w == nil {
		var err error
		if w, err = Prestart(); err != nil {
			return nil, fmt.Errorf("shim for job %s: %w", spec.ID, err)
		}
	}
	return w.Start(spec)
}

// Take returns a waiting shim that is still alive, for StartWith, or nil:
// a job whose cgroup is made from the shim's spare (Idle.Spare) takes its
// shim before. A shim that died while it waited (killed by someone) is
// never handed out: it is closed (reaped, its spare removed) and the next
// one taken. A shim taken must be given to StartWith or closed.
func (p *Pool) Take() *Idle {
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
		_ = d.Close()
	}
	return w
}

// Release closes w, a shim Take returned that no job is given after all
// (its spare removed), and fills the pool again.
func (p *Pool) Release(w *Idle) error {
	defer p.fill()
	return w.Close()
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
	spares, gen := p.spares, p.gen
	go func() {
		defer p.fills.Done()
		for {
			// An error is not kept: the next job starts a shim of its own,
			// and that start reports it. A spare that cannot be made only
			// costs the job a migration of its init.
			var spare Spare
			if spares != nil {
				if s, err := spares.NewSpare(); err == nil {
					spare = s
				}
			}
			w, err := PrestartIn(spare)
			p.mu.Lock()
			if err != nil || p.closed {
				p.filling = false
				p.mu.Unlock()
				if w != nil {
					_ = w.Close()
				}
				return
			}
			if gen != p.gen {
				// UseSpares since: this one is of the old kind.
				spares, gen = p.spares, p.gen
				p.mu.Unlock()
				_ = w.Close()
				continue
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
		_ = w.Close()
	}
}

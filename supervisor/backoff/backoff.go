// Package backoff is the restart delay of a supervised service: it doubles
// after each crash up to a ceiling and starts over once the service has run
// healthily for a while, like systemd's RestartSec with a steps ceiling.
package backoff

import "time"

// Backoff computes restart delays. The zero value is not usable; use New or
// Default.
type Backoff struct {
	min, max, reset time.Duration
	cur             time.Duration
}

// New returns a Backoff starting at min, doubling up to max, and starting
// over after a run of at least reset.
func New(min, max, reset time.Duration) *Backoff {
	return &Backoff{min: min, max: max, reset: reset}
}

// Default is 200 ms doubling to 10 s, reset after 30 s of running.
func Default() *Backoff { return New(200*time.Millisecond, 10*time.Second, 30*time.Second) }

// Next returns how long to wait before restarting a service that ran for
// ranFor before it died.
func (b *Backoff) Next(ranFor time.Duration) time.Duration {
	switch {
	case ranFor >= b.reset || b.cur == 0:
		b.cur = b.min
	default:
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

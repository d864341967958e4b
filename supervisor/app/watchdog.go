package app

import (
	"context"
	"time"

	"github.com/joblet-dev/joblet/supervisor/child"
)

// A watchdog restarts a service whose process runs but no longer answers,
// as systemd's WatchdogSec would: for example a helper sent SIGTERM from
// outside, whose service has stopped while its go-plugin server lingers.
type watchdog struct {
	probe    func(context.Context) error
	every    time.Duration
	failures int           // consecutive failed probes that mean "hung"
	startup  time.Duration // how long a new process may take to answer at all
}

// firstAnswerPoll is the probe interval until a process first answers.
const firstAnswerPoll = 100 * time.Millisecond

// defaultWatchdog tolerates a few seconds of unresponsiveness: the probes
// are cheap, and a false restart costs more than a late one.
func defaultWatchdog(probe func(context.Context) error) *watchdog {
	return &watchdog{probe: probe, every: 2 * time.Second, failures: 3, startup: startupTimeout}
}

// hung is closed when p stops answering; it stays open while p answers,
// after p ends and after ctx is done. answered says p was seen ready.
func (w *watchdog) hung(ctx context.Context, p *child.Proc, answered bool) <-chan struct{} {
	ch := make(chan struct{})
	if w == nil {
		return ch
	}
	go func() {
		failed := 0
		for {
			// Until its first answer, probe a new process quickly, so that
			// "has answered" is known early and a later silence counts.
			wait := w.every
			if !answered {
				wait = min(wait, firstAnswerPoll)
			}
			select {
			case <-ctx.Done():
				return
			case <-p.Done():
				return
			case <-time.After(wait):
			}
			pctx, cancel := context.WithTimeout(ctx, w.every)
			err := w.probe(pctx)
			cancel()
			switch {
			case err == nil:
				answered, failed = true, 0
			case answered || time.Since(p.Started()) > w.startup:
				failed++
			}
			if failed >= w.failures {
				close(ch)
				return
			}
		}
	}()
	return ch
}

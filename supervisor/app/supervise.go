package app

import (
	"context"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/joblet-dev/joblet/supervisor/backoff"
	"github.com/joblet-dev/joblet/supervisor/child"
)

// service is one supervised child and its current process.
type service struct {
	spec     child.Spec
	log      zerolog.Logger
	backoff  *backoff.Backoff
	watchdog *watchdog // nil: only the process ending counts

	mu   sync.Mutex
	proc *child.Proc // nil until started
}

func (s *service) current() *child.Proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

func (s *service) set(p *child.Proc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.proc = p
}

// supervisor starts services in order, restarts the ones that die, and stops
// them in reverse order.
type supervisor struct {
	stderr   io.Writer
	pids     *pidFile
	services []*service
	watchers sync.WaitGroup
}

// start launches svc and records its pid.
func (sv *supervisor) start(svc *service) error {
	p, err := child.Start(svc.spec, svc.log, sv.stderr)
	if err != nil {
		return err
	}
	svc.set(p)
	svc.log.Info().Int("pid", p.Pid()).Msg("service started")
	if err := sv.pids.set(svc.spec.Name, p.Pid()); err != nil {
		svc.log.Warn().Err(err).Msg("cannot record pid")
	}
	return nil
}

// watch restarts svc whenever its process ends or stops answering, until ctx
// is done.
func (sv *supervisor) watch(ctx context.Context, svc *service) {
	sv.watchers.Add(1)
	go func() {
		defer sv.watchers.Done()
		answered := true // the first start waited for readiness
		for {
			p := svc.current()
			hungCtx, stopProbing := context.WithCancel(ctx)
			msg := "service exited unexpectedly"
			select {
			case <-ctx.Done():
				stopProbing()
				return
			case <-p.Done():
			case <-svc.watchdog.hung(hungCtx, p, answered):
				msg = "service stopped answering; restarting it"
			}
			stopProbing()
			ran := time.Since(p.Started())
			delay := svc.backoff.Next(ran)
			svc.log.Error().Int("pid", p.Pid()).Stringer("ran", ran.Round(time.Millisecond)).
				Stringer("restart_in", delay).Msg(msg)
			p.Stop() // ends a hung one; reaps it and removes go-plugin's leftovers
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(delay):
				}
				err := sv.start(svc)
				if err == nil {
					answered = svc.watchdog == nil || waitReady(ctx, svc, svc.watchdog.probe) == nil
					break
				}
				delay = svc.backoff.Next(0)
				svc.log.Error().Err(err).Stringer("restart_in", delay).Msg("restart failed")
			}
		}
	}()
}

// stop waits for the watchers (whose ctx the caller has cancelled) and then
// stops every started service, last started first.
func (sv *supervisor) stop() {
	sv.watchers.Wait()
	for _, svc := range slices.Backward(sv.services) {
		p := svc.current()
		if p == nil {
			continue
		}
		svc.log.Info().Int("pid", p.Pid()).Msg("stopping service")
		if p.Stop() {
			svc.log.Warn().Int("pid", p.Pid()).Stringer("timeout", svc.spec.StopTimeout).Msg("service did not stop in time; killed")
		} else {
			svc.log.Info().Int("pid", p.Pid()).Msg("service stopped")
		}
	}
}

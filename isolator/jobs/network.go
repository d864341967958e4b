package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/netdapi"
)

// A job's network comes from netd (Options.Netd): before the job's init
// exists, Attach prepares a network namespace for it (with its veth, address
// and name on the job's network), and the sandbox starts the init inside
// it. Once the job has ended, Detach releases all of that again. Without
// netd (tests of the registry alone), a job may only ask for "none", and
// the sandbox gives it a fresh namespace with loopback only.

// Timeouts and retries of the calls to netd.
const (
	attachTimeout = 30 * time.Second
	// attachPatience is how long an Attach is retried while netd is
	// unavailable (Options.NetdPatience): the supervisor has a netd that
	// died back well within a second, and a job (with its upload, received
	// already) should not fail for that.
	attachPatience  = 10 * time.Second
	attachFirstWait = 50 * time.Millisecond
	attachMaxWait   = time.Second
	detachTimeout   = 10 * time.Second
	detachFirstWait = 100 * time.Millisecond
	detachMaxWait   = 5 * time.Second
	// detachPatience is how long a detach is retried while netd is down;
	// once the isolator is shutting down, detachPatienceClosed.
	detachPatience       = 2 * time.Minute
	detachPatienceClosed = 5 * time.Second
)

// checkNetwork refuses, before anything is made for the job, a network this
// isolator cannot give. netd checks the rest (names, existence) at Attach.
func (r *Registry) checkNetwork(spec *jobletv1.JobSpec) error {
	if r.opts.Netd != nil {
		return nil
	}
	switch spec.GetNetwork() {
	case "", netdapi.None:
		return nil
	}
	return errdefs.Errorf(errdefs.ErrInvalidArgument, "network %q is not available: this isolator runs without netd (only \"none\")", spec.GetNetwork())
}

// attach asks netd for the job's network ("bridge" when the spec names
// none) and records the network, address and host name on the job; when
// netd refuses, the network asked for. The
// zero Attachment (no netd) means a fresh namespace with loopback only.
func (r *Registry) attach(j *job, spec *jobletv1.JobSpec) (netdapi.Attachment, error) {
	if r.opts.Netd == nil {
		return netdapi.Attachment{}, nil
	}
	id, network := j.rec.GetId(), spec.GetNetwork()
	if network == "" {
		network = netdapi.Bridge
	}
	ctx, cancel := context.WithTimeout(context.Background(), attachTimeout)
	defer cancel()
	// Attach is idempotent (netd answers a repeated one with the job's
	// lease), so a retry after a call that did reach netd is harmless.
	start, wait := time.Now(), attachFirstWait
	a, err := r.opts.Netd.Attach(ctx, id, network, spec.GetName())
	for errors.Is(err, errdefs.ErrUnavailable) && time.Since(start)+wait <= r.opts.NetdPatience {
		j.log.Info().Err(err).Stringer("retry_in", wait).Msg("netd unavailable; retrying the network attach")
		time.Sleep(wait)
		wait = min(2*wait, attachMaxWait)
		a, err = r.opts.Netd.Attach(ctx, id, network, spec.GetName())
	}
	if err != nil {
		// The record names the network asked for, not the "none" it
		// starts with: it was refused, and the job never ran on "none".
		r.mu.Lock()
		j.rec.Network = network
		r.mu.Unlock()
		return netdapi.Attachment{}, netdError(network, err)
	}
	r.mu.Lock()
	j.rec.Network, j.rec.IpAddress = a.Network, a.IP
	if a.Hostname != "" {
		j.rec.Hostname = a.Hostname
	}
	r.mu.Unlock()
	j.log.Debug().Str("network", a.Network).Str("ip", a.IP).Msg("network attached")
	return a, nil
}

// netdError is what a caller is told when netd refuses or fails an Attach.
func netdError(network string, err error) error {
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "network %q does not exist", network)
	case errors.Is(err, errdefs.ErrInvalidArgument), errors.Is(err, errdefs.ErrAlreadyExists),
		errors.Is(err, errdefs.ErrResourceExhausted), errors.Is(err, errdefs.ErrFailedPrecondition):
		return err // netd's messages are written for users
	case errors.Is(err, errdefs.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return errdefs.Errorf(errdefs.ErrUnavailable, "the network service is not available; try again")
	}
	return fmt.Errorf("attach network %q: %w", network, err)
}

// detachNow releases a job's network at once, for a job that did not
// start; if netd cannot be reached it is retried in the background.
func (r *Registry) detachNow(id string, log zerolog.Logger) {
	if r.opts.Netd == nil {
		return
	}
	if err := r.detachOnce(id); err == nil {
		return
	}
	r.detachLater(id, log)
}

// endDetachWait bounds how long an ended job's final record waits for its
// network's release (detachFirst): a netd that hangs delays the record
// no more than that, and the release goes on in the background.
const endDetachWait = 2 * time.Second

// detachFirst releases an ended job's network in the background and
// returns a channel closed once the first attempt is over; a failed one
// goes on as detachLater. The job's end is recorded after that: a client
// that sees the job ended finds its network free (rnx network list no
// longer counts the job, and rnx network remove right after it works).
// netd answers a Detach once the job is out of its state, before the
// kernel removes the veth pair (~20 ms here), so the wait is short.
func (r *Registry) detachFirst(id string, log zerolog.Logger) <-chan struct{} {
	done := make(chan struct{})
	if r.opts.Netd == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		if err := r.detachOnce(id); err != nil {
			r.detachLater(id, log)
		}
	}()
	return done
}

// detachLater releases a job's network off the caller's path, retrying with
// backoff while netd is down. Detach is idempotent, so a retry after a
// call that did reach netd is harmless. The registry's WaitGroup covers the
// retries, so a clean shutdown lets them finish (briefly, if netd is gone).
func (r *Registry) detachLater(id string, log zerolog.Logger) {
	if r.opts.Netd == nil {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		start, wait := time.Now(), detachFirstWait
		for {
			err := r.detachOnce(id)
			if err == nil {
				log.Debug().Msg("network detached")
				return
			}
			r.mu.Lock()
			closed := r.closed
			r.mu.Unlock()
			patience := detachPatience
			if closed {
				patience = detachPatienceClosed
			}
			if time.Since(start) > patience {
				log.Error().Err(err).Msg("cannot release the job's network; netd keeps its lease until it is detached")
				return
			}
			log.Warn().Err(err).Stringer("retry_in", wait).Msg("cannot release the job's network")
			time.Sleep(wait)
			wait = min(2*wait, detachMaxWait)
		}
	}()
}

func (r *Registry) detachOnce(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), detachTimeout)
	defer cancel()
	return r.opts.Netd.Detach(ctx, id)
}

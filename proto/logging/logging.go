// Package logging sets up the structured logger every Joblet daemon uses and
// fixes the key vocabulary (job_id, network, method, peer_uid).
package logging

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/term"
)

// The log keys every service uses.
const (
	KeyService = "service"
	KeyJobID   = "job_id"
	KeyNetwork = "network"
	KeyMethod  = "method"
	KeyPeerUID = "peer_uid"
)

// New returns a logger for service writing to w: to the systemd journal with
// structured fields when w is the stream systemd connected to the journal
// (see Journal), human-readable on a terminal or when format is "console",
// JSON otherwise. JOBLET_LOG_FORMAT (json, console) sets format when it is
// empty and overrides the journal.
func New(service string, w io.Writer, format string) zerolog.Logger {
	if format == "" {
		format = os.Getenv("JOBLET_LOG_FORMAT")
	}
	out := w
	switch f, ok := w.(*os.File); {
	case format == "" && ok && journalStream(f):
		out = Journal("joblet-"+service, w)
	case (ok && term.IsTerminal(int(f.Fd())) && format != "json") || format == "console":
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(out).With().Timestamp().Str(KeyService, service).Logger()
}

// With returns ctx carrying l, so code deeper down logs with its fields.
func With(ctx context.Context, l zerolog.Logger) context.Context {
	return l.WithContext(ctx)
}

// From returns the logger carried by ctx.
func From(ctx context.Context) *zerolog.Logger {
	return zerolog.Ctx(ctx)
}

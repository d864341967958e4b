// Package logging sets up the structured logger every Joblet daemon uses and
// fixes the key vocabulary (job_id, network, method, peer_uid).
package logging

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
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

// EnvLevel names the environment variable that sets the least severe level
// a daemon logs: debug, info (the default), warn or error.
const EnvLevel = "JOBLET_LOG_LEVEL"

// DefaultLevel is the level logged when EnvLevel is unset. Debug lines
// (every internal call, each job's cgroup and network steps) are off by
// default: they cost every job some CPU in every service it passes.
const DefaultLevel = zerolog.InfoLevel

// ParseLevel reads a level as EnvLevel takes it: debug, info, warn or error,
// in any case; empty is DefaultLevel.
func ParseLevel(s string) (zerolog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "":
		return DefaultLevel, nil
	case "debug":
		return zerolog.DebugLevel, nil
	case "info":
		return zerolog.InfoLevel, nil
	case "warn", "warning":
		return zerolog.WarnLevel, nil
	case "error":
		return zerolog.ErrorLevel, nil
	}
	return DefaultLevel, fmt.Errorf("%s=%q: want debug, info, warn or error", EnvLevel, s)
}

// New returns a logger for service writing to w: to the systemd journal with
// structured fields when w is the stream systemd connected to the journal
// (see Journal), human-readable on a terminal or when format is "console",
// JSON otherwise. JOBLET_LOG_FORMAT (json, console) sets format when it is
// empty and overrides the journal. JOBLET_LOG_LEVEL sets the level (see
// ParseLevel); an unknown one logs at the default level and says so in a
// warning.
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
	level, lerr := ParseLevel(os.Getenv(EnvLevel))
	l := zerolog.New(out).Level(level).With().Timestamp().Str(KeyService, service).Logger()
	if lerr != nil {
		l.Warn().Err(lerr).Stringer("using", level).Msg("unknown log level; using the default")
	}
	return l
}

// With returns ctx carrying l, so code deeper down logs with its fields.
func With(ctx context.Context, l zerolog.Logger) context.Context {
	return l.WithContext(ctx)
}

// From returns the logger carried by ctx.
func From(ctx context.Context) *zerolog.Logger {
	return zerolog.Ctx(ctx)
}

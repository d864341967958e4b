package child

import (
	"encoding/json"
	"io"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

// hclogger is the hclog.Logger go-plugin wants, writing through zl, for the
// child whose executable is path. Only errors pass: go-plugin also warns
// about the second close of an already stopped client, which would just
// repeat what we log ourselves.
//
// The logger go-plugin names after the child's executable is switched off:
// go-plugin copies each line of the child's stderr to its Stderr writer
// and then, unless that logger is off, decodes the line as JSON to echo it
// at debug level, which nobody reads. The daemons log a few lines per job,
// and that decoding was 4% of the machine's CPU at 55 jobs/s (a perf
// profile of the bench's 1000 jobs).
func hclogger(zl zerolog.Logger, path string) hclog.Logger {
	return stderrOff{
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       "go-plugin",
			Level:      hclog.Error,
			JSONFormat: true,
			Output:     zerologWriter{zl},
		}),
		child: filepath.Base(path),
	}
}

// stderrOff is a logger whose sub-logger for the child's stderr is off.
type stderrOff struct {
	hclog.Logger
	child string // the child executable's base name
}

// Named returns the logger for name; go-plugin asks for the child's
// executable's name to echo its stderr.
func (l stderrOff) Named(name string) hclog.Logger {
	if name == l.child {
		return hclog.New(&hclog.LoggerOptions{Level: hclog.Off, Output: io.Discard})
	}
	return l.Logger.Named(name)
}

// zerologWriter turns hclog's JSON lines into zerolog events.
type zerologWriter struct{ zl zerolog.Logger }

func (w zerologWriter) Write(p []byte) (int, error) {
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil {
		w.zl.Error().Msg(strings.TrimSpace(string(p)))
		return len(p), nil
	}
	level, err := zerolog.ParseLevel(str(m["@level"]))
	if err != nil || level == zerolog.NoLevel {
		level = zerolog.ErrorLevel
	}
	msg := str(m["@message"])
	for _, k := range []string{"@level", "@message", "@timestamp", "@module"} {
		delete(m, k)
	}
	w.zl.WithLevel(level).Fields(m).Msg(msg)
	return len(p), nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

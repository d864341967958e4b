package child

import (
	"encoding/json"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

// hclogger is the hclog.Logger go-plugin wants, writing through zl. Only
// errors pass: go-plugin also echoes every line of the child's stderr at
// debug level, and warns about the second close of an already stopped
// client; both would just repeat what we log ourselves.
func hclogger(zl zerolog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "go-plugin",
		Level:      hclog.Error,
		JSONFormat: true,
		Output:     zerologWriter{zl},
	})
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

package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]zerolog.Level{
		"": zerolog.InfoLevel, "debug": zerolog.DebugLevel, "INFO": zerolog.InfoLevel,
		" warn ": zerolog.WarnLevel, "warning": zerolog.WarnLevel, "Error": zerolog.ErrorLevel,
	} {
		got, err := ParseLevel(in)
		if err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"verbose", "trace", "5", "inf"} {
		if got, err := ParseLevel(bad); err == nil || got != DefaultLevel || !strings.Contains(err.Error(), EnvLevel) {
			t.Errorf("ParseLevel(%q) = %v, %v; want the default and an error naming %s", bad, got, err, EnvLevel)
		}
	}
}

// lines logs one line at each level through New and returns the messages
// written.
func lines(t *testing.T, level string) []string {
	t.Helper()
	t.Setenv(EnvLevel, level)
	var b bytes.Buffer
	log := New("isolator", &b, "json")
	log.Debug().Msg("d")
	log.Info().Msg("i")
	log.Warn().Msg("w")
	log.Error().Msg("e")
	var msgs []string
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var m struct{ Message string }
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if n := strings.Count(l, `"level":`); n != 1 {
			t.Errorf("line %q has %d level fields, want 1", l, n)
		}
		msgs = append(msgs, m.Message)
	}
	return msgs
}

func TestNewLevel(t *testing.T) {
	for level, want := range map[string]string{
		"":      "i w e",
		"debug": "d i w e",
		"warn":  "w e",
		"error": "e",
		"loud":  "unknown log level; using the default i w e",
	} {
		if got := strings.Join(lines(t, level), " "); got != want {
			t.Errorf("%s=%q: logged %q, want %q", EnvLevel, level, got, want)
		}
	}
}

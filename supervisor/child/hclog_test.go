package child

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

// syncBuffer is a child's stderr as the test reads it while go-plugin writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestChildStderrNotDecoded(t *testing.T) {
	l := hclogger(zerolog.Nop(), "/usr/lib/joblet/joblet-logd")
	if got := l.Named("joblet-logd").GetLevel(); got != hclog.Off {
		t.Errorf("the child's stderr logger is at %v, want off (go-plugin decodes each line otherwise)", got)
	}
	if got := l.Named("stdio").GetLevel(); got != hclog.Error {
		t.Errorf("go-plugin's other loggers are at %v, want error", got)
	}
}

func TestChildLogLinesPassThrough(t *testing.T) {
	var stderr syncBuffer
	p, err := Start(spec(t, "clean"), zerolog.Nop(), &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if p.Stop() {
		t.Fatal("the fake had to be killed")
	}
	out := stderr.String()
	if !strings.HasSuffix(out, "\n") {
		t.Fatalf("the child's stderr does not end with a whole line: %q", out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) < 1 || lines[0] == "" {
		t.Fatalf("no log line from the child: %q", out)
	}
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("line not passed through as the child wrote it (one JSON object): %q: %v", line, err)
		}
	}
}

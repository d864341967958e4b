package logging

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/rs/zerolog"
)

type sent struct {
	msg  string
	prio journal.Priority
	vars map[string]string
}

func TestJournalWriterFields(t *testing.T) {
	var got []sent
	w := &journalWriter{identifier: "joblet-isolator", fallback: &bytes.Buffer{},
		send: func(msg string, p journal.Priority, vars map[string]string) error {
			got = append(got, sent{msg, p, vars})
			return nil
		}}
	log := zerolog.New(w).With().Timestamp().Str(KeyService, "isolator").Logger()
	log.Warn().Str(KeyJobID, "7").Int(KeyPeerUID, 998).Str("weird-key.x", "v").
		Err(errors.New("boom")).Msg("job failed")

	if len(got) != 1 {
		t.Fatalf("sent %d entries, want 1", len(got))
	}
	e := got[0]
	wantMsg := `job failed error=boom job_id=7 peer_uid=998 weird-key.x=v`
	if e.msg != wantMsg || e.prio != journal.PriWarning {
		t.Errorf("message %q priority %d, want %q %d", e.msg, e.prio, wantMsg, journal.PriWarning)
	}
	want := map[string]string{
		"JOB_ID": "7", "PEER_UID": "998", "SERVICE": "isolator", "ERROR": "boom",
		"WEIRD_KEY_X": "v", "SYSLOG_IDENTIFIER": "joblet-isolator",
	}
	for k, v := range want {
		if e.vars[k] != v {
			t.Errorf("%s = %q, want %q", k, e.vars[k], v)
		}
	}
	for _, k := range []string{"MESSAGE", "LEVEL", "TIME"} {
		if _, ok := e.vars[k]; ok {
			t.Errorf("field %s should not be sent as a field", k)
		}
	}
}

func TestJournalWriterFallsBack(t *testing.T) {
	var fb bytes.Buffer
	w := &journalWriter{identifier: "x", fallback: &fb,
		send: func(string, journal.Priority, map[string]string) error { return errors.New("journald down") }}
	line := []byte(`{"level":"info","message":"hello"}` + "\n")
	if n, err := w.Write(line); err != nil || n != len(line) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if fb.String() != string(line) {
		t.Errorf("fallback got %q, want the line as it was", fb.String())
	}
}

func TestJournalMessageQuotes(t *testing.T) {
	msg, _, _, err := journalEntry([]byte(`{"message":"m","error":"open /x: no such file","n":3,"e":""}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := `m e="" error="open /x: no such file" n=3`; msg != want {
		t.Errorf("message %q, want %q", msg, want)
	}
}

func TestJournalField(t *testing.T) {
	for in, want := range map[string]string{
		"job_id": "JOB_ID", "Method": "METHOD", "_hidden": "F_HIDDEN", "": "F", "a-b": "A_B",
	} {
		got := journalField(in)
		if got != want {
			t.Errorf("journalField(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPriority(t *testing.T) {
	for level, want := range map[string]journal.Priority{
		"debug": journal.PriDebug, "info": journal.PriInfo, "warn": journal.PriWarning,
		"error": journal.PriErr, "fatal": journal.PriCrit, "panic": journal.PriCrit, "": journal.PriInfo,
	} {
		if got := priority(level); got != want {
			t.Errorf("priority(%q) = %d, want %d", level, got, want)
		}
	}
}

// Without a matching JOURNAL_STREAM the logger writes JSON to w, as before.
func TestNewWithoutJournalWritesJSON(t *testing.T) {
	t.Setenv("JOURNAL_STREAM", "1:1")
	t.Setenv("JOBLET_LOG_FORMAT", "")
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	log := New("logd", f, "")
	log.Info().Str(KeyJobID, "3").Msg("hi")
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"job_id":"3"`) || !strings.Contains(string(b), `"service":"logd"`) {
		t.Errorf("log = %q, want a JSON line with job_id and service", b)
	}
}

package logging

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/rs/zerolog"
)

// journalStream reports whether f is the stream systemd connected to the
// journal (JOURNAL_STREAM names its device and inode) and journald's native
// socket answers. Checking the inode, not just the variable, keeps a child
// whose stderr was redirected elsewhere from logging to the journal.
func journalStream(f *os.File) bool {
	var match bool
	switch f {
	case os.Stderr:
		match, _ = journal.StderrIsJournalStream()
	case os.Stdout:
		match, _ = journal.StdoutIsJournalStream()
	}
	return match && journal.Enabled()
}

// Journal returns a writer that turns each zerolog JSON line into one
// journal entry: the level becomes PRIORITY and every other field a journal
// field of the same name in upper case (job_id -> JOB_ID), so
// `journalctl -u joblet-isolator JOB_ID=7` finds a job's lines; MESSAGE is
// the message followed by the fields as key=value.
// A line the journal refuses is written to fallback as it was.
func Journal(identifier string, fallback io.Writer) io.Writer {
	return &journalWriter{identifier: identifier, fallback: fallback, send: journal.Send}
}

type journalWriter struct {
	identifier string
	fallback   io.Writer
	send       func(msg string, p journal.Priority, vars map[string]string) error
}

func (w *journalWriter) Write(line []byte) (int, error) {
	msg, prio, vars, err := journalEntry(line)
	if err == nil {
		vars["SYSLOG_IDENTIFIER"] = w.identifier
		err = w.send(msg, prio, vars)
	}
	if err != nil {
		return w.fallback.Write(line)
	}
	return len(line), nil
}

// journalEntry converts one zerolog JSON object into a journal message,
// priority and fields. The time is left to journald, which stamps every
// entry itself.
func journalEntry(line []byte) (string, journal.Priority, map[string]string, error) {
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	var fields map[string]any
	if err := d.Decode(&fields); err != nil {
		return "", 0, nil, err
	}
	msg, _ := fields[zerolog.MessageFieldName].(string)
	level, _ := fields[zerolog.LevelFieldName].(string)
	vars := make(map[string]string, len(fields))
	var keys []string
	for k, v := range fields {
		switch k {
		case zerolog.MessageFieldName, zerolog.LevelFieldName, zerolog.TimestampFieldName:
			continue
		}
		vars[journalField(k)] = journalValue(v)
		if k != KeyService {
			keys = append(keys, k)
		}
	}
	// The fields are repeated in the message as key=value, because that is
	// all `journalctl -u` shows by default; the unit names the service.
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(msg)
	for _, k := range keys {
		v := journalValue(fields[k])
		if strings.ContainsAny(v, " \t\n\"=") || v == "" {
			v = strconv.Quote(v)
		}
		fmt.Fprintf(&b, " %s=%s", k, v)
	}
	return b.String(), priority(level), vars, nil
}

// journalField maps a zerolog key to a valid journal field name: upper case
// letters, digits and underscores, not starting with an underscore.
func journalField(k string) string {
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, k)
	if name == "" || name[0] == '_' {
		name = "F" + name
	}
	return name
}

// journalValue is a field's value as text: strings as they are, anything
// else (numbers, booleans, objects) in its JSON form.
func journalValue(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

func priority(level string) journal.Priority {
	switch level {
	case "trace", "debug":
		return journal.PriDebug
	case "warn":
		return journal.PriWarning
	case "error":
		return journal.PriErr
	case "fatal", "panic":
		// Not emerg: that is for the whole system being unusable, and
		// journald broadcasts it to every terminal.
		return journal.PriCrit
	}
	return journal.PriInfo
}

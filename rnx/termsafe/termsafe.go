// Package termsafe keeps job-controlled bytes from driving the user's
// terminal. A job is hostile code: its output, command line or failure
// reason could carry escape sequences that retitle the window, rewrite
// earlier lines or, on some terminals, answer back as typed input. Control
// characters are shown in caret notation instead (ESC becomes "^[", the C1
// control U+009B becomes "M-^[", as `cat -v` does).
package termsafe

import (
	"io"
	"strings"
)

// String returns s with every control character (C0, DEL and C1, tab and
// newline included) made visible; for one-line text such as a command.
func String(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < 0x20 || r == 0x7f:
			b.Write(caret(byte(r)))
		case r >= 0x80 && r < 0xa0:
			b.WriteString("M-")
			b.Write(caret(byte(r - 0x80)))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// caret returns the caret notation of a C0 control or DEL.
func caret(c byte) []byte {
	if c == 0x7f {
		return []byte("^?")
	}
	return []byte{'^', c + '@'}
}

// Writer passes a job's output stream to a terminal with its controls made
// visible, keeping newline, tab and carriage return so output still looks
// like output. C1 controls arrive UTF-8 encoded (0xC2 0x80-0x9F) and may be
// split across writes, so the Writer holds back a trailing 0xC2 until the
// next write or Flush.
type Writer struct {
	w      io.Writer
	buf    []byte
	heldC2 bool
}

// NewWriter returns a Writer that writes the sanitized bytes to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write sanitizes p and writes it; it reports len(p) on success.
func (s *Writer) Write(p []byte) (int, error) {
	out := s.buf[:0]
	for _, c := range p {
		if s.heldC2 {
			s.heldC2 = false
			if c >= 0x80 && c < 0xa0 {
				out = append(out, 'M', '-')
				out = append(out, caret(c-0x80)...)
				continue
			}
			out = append(out, 0xc2)
		}
		switch {
		case c == '\n' || c == '\t' || c == '\r':
			out = append(out, c)
		case c < 0x20 || c == 0x7f:
			out = append(out, caret(c)...)
		case c == 0xc2:
			s.heldC2 = true
		default:
			out = append(out, c)
		}
	}
	s.buf = out
	if _, err := s.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes a held-back 0xC2 byte; call it when the stream ends.
func (s *Writer) Flush() error {
	if !s.heldC2 {
		return nil
	}
	s.heldC2 = false
	_, err := s.w.Write([]byte{0xc2})
	return err
}

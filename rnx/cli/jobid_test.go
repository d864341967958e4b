package cli

import (
	"regexp"
	"strings"
	"testing"
)

// validJobID accepts exactly what the regular expression it replaced did.
func TestValidJobID(t *testing.T) {
	oracle := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	ids := []string{
		"", "1", "42", "a", "Z", "job-7", "a.b_c-d", "7.", "7_", "7-",
		".7", "_7", "-7", " 7", "7 ", "4\x1b2", "4\n", "é", "7é", "7/8", "7:8", "7+",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 65),
		"a" + strings.Repeat("-", 63), "a" + strings.Repeat("-", 64),
	}
	// Every byte in the first and in a later position.
	for c := range 256 {
		ids = append(ids, string([]byte{byte(c)}), "a"+string([]byte{byte(c)}))
	}
	for _, id := range ids {
		if got, want := validJobID(id), oracle.MatchString(id); got != want {
			t.Errorf("validJobID(%q) = %v, want %v", id, got, want)
		}
	}
}

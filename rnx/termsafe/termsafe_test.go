package termsafe

import (
	"bytes"
	"testing"
)

func TestString(t *testing.T) {
	for in, want := range map[string]string{
		"echo hi":               "echo hi",
		"\x1b]0;pwned\x07":      "^[]0;pwned^G",
		"a\nb\tc\rd":            "a^Jb^Ic^Md",
		"del\x7f":               "del^?",
		"csi\u009b31m":          "csiM-^[31m",
		"héllo, 世界":             "héllo, 世界",
		"nul\x00":               "nul^@",
		"\x1b[2J\x1b[H cleared": "^[[2J^[[H cleared",
	} {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriterKeepsLayoutAndEscapesControls(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out)
	in := "line 1\n\tcol\r\x1b[31mred\x1b[0m\x07\x7f é\n"
	if n, err := w.Write([]byte(in)); err != nil || n != len(in) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "line 1\n\tcol\r^[[31mred^[[0m^G^? é\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

func TestWriterC1SplitAcrossWrites(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out)
	for _, p := range []string{"a\xc2", "\x9b2J b\xc2", "\xa9 c\xc2"} {
		if _, err := w.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := "aM-^[2J b\u00a9 c\xc2"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

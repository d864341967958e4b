package upload

import (
	"bytes"
	"strings"
	"testing"
)

func TestProgress(t *testing.T) {
	p := &Plan{Files: 15, Bytes: 12_345_678}
	var b bytes.Buffer
	pr := NewProgress(&b, false, p)
	pr.Add(1000)
	pr.Done()
	if b.String() != "Files: 15 uploaded (12.3 MB)\n" {
		t.Fatalf("summary %q", b.String())
	}
	b.Reset()
	pr = NewProgress(&b, true, p)
	pr.Add(int(p.Bytes))
	pr.Done()
	if out := b.String(); !strings.Contains(out, "Uploading 15 files") || !strings.Contains(out, "100%") || !strings.Contains(out, "MB") {
		t.Fatalf("bar %q: want the description, 100%% and the bytes", out)
	}
}

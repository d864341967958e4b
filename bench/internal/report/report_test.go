package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/bench/internal/stats"
)

func sample(med, p99 float64, n int) *stats.Summary {
	return &stats.Summary{N: n, Median: med, P99: p99}
}

func TestSlowdown(t *testing.T) {
	lat := Row{Value: sample(6, 9, 100), BaselineValue: sample(3, 4, 100)}
	if got := lat.Slowdown(); got != 2 {
		t.Errorf("latency slowdown = %v, want 2", got)
	}
	tp := Row{HigherIsBetter: true, Value: sample(250, 0, 1), BaselineValue: sample(1000, 0, 1)}
	if got := tp.Slowdown(); got != 4 {
		t.Errorf("throughput slowdown = %v, want 4", got)
	}
	if got := (Row{Value: sample(1, 1, 1)}).Slowdown(); got != 0 {
		t.Errorf("slowdown without baseline = %v, want 0", got)
	}
}

func testReport() *Report {
	met := false
	r := &Report{Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Duration: 90 * time.Second, Machine: "test box"}
	r.Add(Row{Section: "1", Name: "start a|b", Unit: "ms", Value: sample(6, 9, 100), Baseline: "bwrap", BaselineValue: sample(3, 4, 100), Target: "≤ 1.2×", Met: &met})
	r.Add(Row{Section: "5", Name: "upload", Unit: "MB/s", Note: "n/a (uploads not built)"})
	r.Notes = []string{"machine was loaded"}
	return r
}

func TestMarkdown(t *testing.T) {
	var b strings.Builder
	if err := testReport().Markdown(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| 1 | start a\\|b | 6.00 ms | 9.00 ms | bwrap (3.00 ms / 4.00 ms) | 2.00× | ≤ 1.2× ✗ |",
		"| 5 | upload | n/a |",
		"n/a (uploads not built)",
		"- machine was loaded",
		"Run took 1m30s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
}

func TestText(t *testing.T) {
	var b strings.Builder
	if err := testReport().Text(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "2.00×") || !strings.Contains(b.String(), "note: machine was loaded") {
		t.Errorf("text table:\n%s", b.String())
	}
}

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	if err := testReport().WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join(dir, "latest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatalf("latest.json does not parse: %v", err)
	}
	if len(back.Rows) != 2 || back.Rows[0].Value.Median != 6 || back.Rows[1].Value != nil {
		t.Errorf("rows read back = %+v", back.Rows)
	}
	if _, err := os.Stat(filepath.Join(dir, "latest.md")); err != nil {
		t.Error(err)
	}
}

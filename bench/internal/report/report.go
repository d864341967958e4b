// Package report holds the benchmark's one table and renders it as aligned
// text (the terminal), Markdown and JSON (bench/results/).
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/joblet-dev/joblet/bench/internal/stats"
)

// Row is one figure of the table.
type Row struct {
	Section string `json:"section"` // which numbered item of the issue it answers
	Name    string `json:"name"`
	Unit    string `json:"unit"`
	// Value is nil when the figure could not be measured (Note says why).
	Value *stats.Summary `json:"value,omitempty"`
	// HigherIsBetter is true for throughputs; it decides the slowdown's direction.
	HigherIsBetter bool           `json:"higher_is_better"`
	Baseline       string         `json:"baseline,omitempty"` // what Value is compared with
	BaselineValue  *stats.Summary `json:"baseline_value,omitempty"`
	Target         string         `json:"target,omitempty"` // the target, in words
	// Met is nil when the row has no target or no value.
	Met  *bool  `json:"met,omitempty"`
	Note string `json:"note,omitempty"`
}

// Slowdown is how many times worse than its baseline the median is (1 = at
// the baseline, 2 = twice the time or half the throughput); 0 when there is
// no baseline to compare with.
func (r Row) Slowdown() float64 {
	if r.Value == nil || r.BaselineValue == nil || r.Value.Median == 0 || r.BaselineValue.Median == 0 {
		return 0
	}
	if r.HigherIsBetter {
		return r.BaselineValue.Median / r.Value.Median
	}
	return r.Value.Median / r.BaselineValue.Median
}

// Report is one run of the benchmark.
type Report struct {
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Machine  string        `json:"machine"` // kernel, CPUs, memory, load
	Rows     []Row         `json:"rows"`
	Notes    []string      `json:"notes,omitempty"`
}

// Add appends a row.
func (r *Report) Add(row Row) { r.Rows = append(r.Rows, row) }

// Text writes the table for a terminal.
func (r *Report) Text(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tfigure\tmedian\tp99\tbaseline (median / p99)\tslowdown\ttarget\tnote")
	for _, row := range r.Rows {
		c := cells(row)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", row.Section, row.Name, c.median, c.p99, c.baseline, c.slowdown, c.target, row.Note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return nil
}

// Markdown writes the report as a Markdown document.
func (r *Report) Markdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Joblet benchmark — %s\n\n", r.Started.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "Machine: %s. Run took %s.\n\n", r.Machine, r.Duration.Round(time.Second))
	b.WriteString("| # | figure | median | p99 | baseline (median / p99) | slowdown | target | note |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, row := range r.Rows {
		c := cells(row)
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", row.Section, md(row.Name), c.median, c.p99, md(c.baseline), c.slowdown, md(c.target), md(row.Note))
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", md(n))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteFiles writes latest.md and latest.json into dir, replacing the
// previous run's: the folder holds the latest run only.
func (r *Report) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("results dir: %w", err)
	}
	var md strings.Builder
	if err := r.Markdown(&md); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "latest.md"), []byte(md.String()), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "latest.json"), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

type rowCells struct{ median, p99, baseline, slowdown, target string }

func cells(row Row) rowCells {
	c := rowCells{median: "n/a", p99: "", slowdown: "", target: row.Target}
	if row.Value != nil {
		c.median = num(row.Value.Median, row.Unit)
		if row.Value.N > 1 {
			c.p99 = num(row.Value.P99, row.Unit)
		}
	}
	if row.Baseline != "" {
		c.baseline = row.Baseline
		if bv := row.BaselineValue; bv != nil {
			c.baseline += " (" + num(bv.Median, row.Unit)
			if bv.N > 1 {
				c.baseline += " / " + num(bv.P99, row.Unit)
			}
			c.baseline += ")"
		}
	}
	if s := row.Slowdown(); s > 0 {
		c.slowdown = fmt.Sprintf("%.2f×", s)
	}
	if row.Met != nil {
		if *row.Met {
			c.target += " ✓"
		} else {
			c.target += " ✗"
		}
	}
	return c
}

// num formats a value with its unit, with precision that suits its size.
func num(v float64, unit string) string {
	var s string
	switch {
	case v == 0:
		s = "0"
	case v < 10:
		s = fmt.Sprintf("%.2f", v)
	case v < 100:
		s = fmt.Sprintf("%.1f", v)
	default:
		s = fmt.Sprintf("%.0f", v)
	}
	if unit == "" {
		return s
	}
	return s + " " + unit
}

// md escapes the characters that would break a Markdown table cell.
func md(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

package upload

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// NewProgress shows the progress of p's upload on w: a bar with bytes,
// rate and time left when w is a terminal, otherwise one line at the end
// ("Files: 15 uploaded (12.3 MB)").
func NewProgress(w io.Writer, terminal bool, p *Plan) Progress {
	if !terminal || p.Bytes == 0 {
		return &summary{w: w, files: p.Files, bytes: p.Bytes}
	}
	return &bar{b: progressbar.NewOptions64(p.Bytes,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(fmt.Sprintf("Uploading %d files", p.Files)),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)}
}

type bar struct{ b *progressbar.ProgressBar }

func (b *bar) Add(n int) { _ = b.b.Add(n) }
func (b *bar) Done()     { _ = b.b.Finish() }

type summary struct {
	w     io.Writer
	files int
	bytes int64
}

func (s *summary) Add(int) {}
func (s *summary) Done() {
	fmt.Fprintf(s.w, "Files: %d uploaded (%s)\n", s.files, HumanBytes(s.bytes))
}

// HumanBytes shows n in decimal units with one decimal: "12.3 MB".
func HumanBytes(n int64) string {
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"kB", "MB", "GB"}
	v, i := float64(n)/1000, 0
	for v >= 999.95 && i < len(units)-1 {
		v /= 1000
		i++
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

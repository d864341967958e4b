// Package stats summarises repeated measurements: median, p99, min, max.
package stats

import (
	"math"
	"sort"
	"time"
)

// Summary describes a set of samples in the unit they were taken in.
type Summary struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	P99    float64 `json:"p99"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// Of summarises samples. Percentiles use the nearest-rank method, so p99 of
// fewer than 100 samples is the maximum: with few samples a tail figure must
// not be interpolated into something better than what was seen.
func Of(samples []float64) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	s := append([]float64(nil), samples...)
	sort.Float64s(s)
	return Summary{
		N:      len(s),
		Median: median(s),
		P99:    rank(s, 0.99),
		Min:    s[0],
		Max:    s[len(s)-1],
	}
}

// Millis converts durations to milliseconds, the unit latency figures use.
func Millis(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// rank is the nearest-rank percentile p (0 < p <= 1) of sorted samples.
func rank(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

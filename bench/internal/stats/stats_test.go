package stats

import (
	"testing"
	"time"
)

func TestOf(t *testing.T) {
	cases := []struct {
		name    string
		samples []float64
		want    Summary
	}{
		{"empty", nil, Summary{}},
		{"one", []float64{4}, Summary{N: 1, Median: 4, P99: 4, Min: 4, Max: 4}},
		{"even count, unsorted", []float64{4, 1, 3, 2}, Summary{N: 4, Median: 2.5, P99: 4, Min: 1, Max: 4}},
		{"odd count", []float64{5, 1, 3}, Summary{N: 3, Median: 3, P99: 5, Min: 1, Max: 5}},
	}
	for _, c := range cases {
		if got := Of(c.samples); got != c.want {
			t.Errorf("%s: Of(%v) = %+v, want %+v", c.name, c.samples, got, c.want)
		}
	}
}

func TestP99NearestRank(t *testing.T) {
	// 1..200: rank ceil(0.99*200) = 198.
	s := make([]float64, 200)
	for i := range s {
		s[i] = float64(200 - i)
	}
	if got := Of(s).P99; got != 198 {
		t.Errorf("p99 of 1..200 = %v, want 198", got)
	}
}

func TestOfKeepsInput(t *testing.T) {
	in := []float64{3, 1, 2}
	Of(in)
	if in[0] != 3 || in[1] != 1 || in[2] != 2 {
		t.Errorf("Of reordered its input: %v", in)
	}
}

func TestMillis(t *testing.T) {
	got := Millis([]time.Duration{1500 * time.Microsecond, 2 * time.Second})
	if got[0] != 1.5 || got[1] != 2000 {
		t.Errorf("Millis = %v, want [1.5 2000]", got)
	}
}

package limits

import (
	"slices"
	"testing"
)

func TestParseCPUList(t *testing.T) {
	tests := []struct {
		in   string
		want []int
	}{
		{"0", []int{0}},
		{"0-3", []int{0, 1, 2, 3}},
		{"1,3,5", []int{1, 3, 5}},
		{"0-1,4-5", []int{0, 1, 4, 5}},
		{"5,1-2,2", []int{1, 2, 5}},
		{"7-7", []int{7}},
		{"8191", []int{8191}},
	}
	for _, tt := range tests {
		got, err := ParseCPUList(tt.in)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ParseCPUList(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", ",", "1,,2", "3-1", "a", "-1", "1-", "1-2-3", "+1", " 1", "1 ", "0x1", "8192", "99999999999999999999"} {
		if got, err := ParseCPUList(in); err == nil {
			t.Errorf("ParseCPUList(%q) = %v, want an error", in, got)
		}
	}
}

func TestFormatCPUList(t *testing.T) {
	tests := []struct {
		in   []int
		want string
	}{
		{nil, ""},
		{[]int{0}, "0"},
		{[]int{0, 1, 2, 5}, "0-2,5"},
		{[]int{1, 3, 5}, "1,3,5"},
		{[]int{0, 1, 4, 5}, "0-1,4-5"},
	}
	for _, tt := range tests {
		if got := FormatCPUList(tt.in); got != tt.want {
			t.Errorf("FormatCPUList(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzParseCPUList checks that any accepted list is sorted, unique, in
// range, and survives a round trip through its canonical form.
func FuzzParseCPUList(f *testing.F) {
	for _, s := range []string{"0", "0-3", "1,3,5", "0-1,4-5", "1,,2", "3-1", "a", "-1", "8191"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cpus, err := ParseCPUList(s)
		if err != nil {
			return
		}
		if len(cpus) == 0 {
			t.Fatalf("ParseCPUList(%q) accepted an empty list", s)
		}
		for i, c := range cpus {
			if c < 0 || c > MaxCPUIndex || (i > 0 && c <= cpus[i-1]) {
				t.Fatalf("ParseCPUList(%q) = %v: not sorted, unique and in range", s, cpus)
			}
		}
		again, err := ParseCPUList(FormatCPUList(cpus))
		if err != nil || !slices.Equal(again, cpus) {
			t.Fatalf("round trip of %q: %v, %v", s, again, err)
		}
	})
}

package limits

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxCPUIndex bounds the CPU numbers ParseCPUList accepts; it is the kernel's
// largest NR_CPUS, and keeps a hostile range such as "0-999999999" from
// allocating a huge slice.
const MaxCPUIndex = 8191

// ParseCPUList parses a kernel-style CPU list ("0", "0-3", "1,3,5",
// "0-1,4-5") into sorted, de-duplicated CPU numbers. It is strict: no spaces,
// no empty elements, no reversed ranges, no signs. The errors describe the
// fault only; Resolve names the flag and adds the error kind.
func ParseCPUList(s string) ([]int, error) {
	if s == "" {
		return nil, fmt.Errorf("empty CPU list")
	}
	seen := make(map[int]bool)
	for elem := range strings.SplitSeq(s, ",") {
		if elem == "" {
			return nil, fmt.Errorf("empty element")
		}
		lo, hi, isRange := strings.Cut(elem, "-")
		first, err := parseCPU(lo)
		if err != nil {
			return nil, err
		}
		last := first
		if isRange {
			if last, err = parseCPU(hi); err != nil {
				return nil, err
			}
			if last < first {
				return nil, fmt.Errorf("range %q is reversed", elem)
			}
		}
		for c := first; c <= last; c++ {
			seen[c] = true
		}
	}
	cpus := make([]int, 0, len(seen))
	for c := range seen {
		cpus = append(cpus, c)
	}
	slices.Sort(cpus)
	return cpus, nil
}

// parseCPU parses one CPU number: decimal digits only, so "+1", "-1" and
// " 1" are rejected rather than quietly accepted by strconv.
func parseCPU(s string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("missing CPU number")
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("%q is not a CPU number", s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > MaxCPUIndex {
		return 0, fmt.Errorf("CPU %s is out of range (at most %d)", s, MaxCPUIndex)
	}
	return n, nil
}

// FormatCPUList renders sorted, de-duplicated CPU numbers in the kernel's
// canonical form ("0-2,5"), the form written to cpuset.cpus.
func FormatCPUList(cpus []int) string {
	var b strings.Builder
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(cpus[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(cpus[j]))
		}
		i = j + 1
	}
	return b.String()
}

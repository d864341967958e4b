package limits

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// FuzzResolve feeds arbitrary limit requests to Resolve against a 4-CPU,
// 8 GiB host with a policy: it never panics, refusals are one-line invalid
// arguments naming the flag, and whatever it returns lies within the host,
// the policy and the minimums, with a canonical core list of online CPUs.
func FuzzResolve(f *testing.F) {
	f.Add(int32(0), int32(0), int64(0), "", int32(0))
	f.Add(int32(150), int32(512), int64(1<<20), "0-1", int32(100))
	f.Add(int32(-1), int32(-1), int64(-1), "3-1", int32(-1))
	f.Add(int32(401), int32(3), int64(0), "4", int32(15))
	f.Add(int32(250), int32(8193), int64(0), "0,0,1", int32(4194305))
	f.Add(int32(2147483647), int32(2147483647), int64(9223372036854775807), "0-8191", int32(2147483647))
	h := Host{OnlineCPUs: []int{0, 1, 2, 3}, MemoryMB: 8192}
	d := Defaults{CPUPercent: 300, MemoryMB: 1024, Pids: 512, MaxMemoryMB: 4096, MaxPids: 100000}
	if err := d.Validate(h); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, cpu, mem int32, io int64, cores string, pids int32) {
		req := &jobletv1.Limits{MaxCpuPercent: cpu, MaxMemoryMb: mem, MaxIoBps: io, CpuCores: cores, MaxPids: pids}
		out, err := Resolve(req, d, h)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "--max-") && !strings.Contains(err.Error(), "--cpu-cores") {
				t.Fatalf("Resolve(%v): %v is not an invalid argument naming the flag", req, err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("Resolve(%v): message %q is not one line", req, err)
			}
			return
		}
		if cpu < 0 || mem < 0 || io < 0 || pids < 0 {
			t.Fatalf("Resolve accepted negative values %v", req)
		}
		if c := out.MaxCpuPercent; c < 0 || int(c) > h.NumCPU()*100 {
			t.Fatalf("Resolve(%v) = cpu %d", req, c)
		}
		if m := out.MaxMemoryMb; m < 0 || (m > 0 && m < MinMemoryMB) || int(m) > d.MaxMemoryMB {
			t.Fatalf("Resolve(%v) = memory %d", req, m)
		}
		if p := out.MaxPids; p < MinPids || int(p) > d.MaxPids {
			t.Fatalf("Resolve(%v) = pids %d", req, p)
		}
		if out.MaxIoBps < 0 {
			t.Fatalf("Resolve(%v) = io %d", req, out.MaxIoBps)
		}
		if out.CpuCores != "" {
			got, err := ParseCPUList(out.CpuCores)
			if err != nil || FormatCPUList(got) != out.CpuCores {
				t.Fatalf("Resolve(%v) = cores %q, not canonical", req, out.CpuCores)
			}
			for _, c := range got {
				if !slices.Contains(h.OnlineCPUs, c) {
					t.Fatalf("Resolve(%v) = cores %q with offline CPU %d", req, out.CpuCores, c)
				}
			}
			if int(out.MaxCpuPercent) > len(got)*100 {
				t.Fatalf("Resolve(%v) = cpu %d over %d cores", req, out.MaxCpuPercent, len(got))
			}
		}
	})
}

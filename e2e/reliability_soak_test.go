package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/e2e/internal/procstat"
)

// RSS bounds. A Go heap grows to twice its live size (GOGC=100) and the
// runtime returns freed pages to the kernel only lazily, so a service that
// has been busy keeps megabytes it does not use: logd goes from about 16
// to about 33 MiB within the first few hundred jobs and stays there (300
// jobs: 32.7 MiB, 1,200 jobs: 33.5 MiB). So the soak compares the second
// half with the first: a leak grows with the number of jobs, a warm heap
// does not. rssHalfSlackKiB is what the second half may add (a leak of 4
// KiB per job adds 10 MB over the 2,500 jobs of the long form's second
// half), rssTotalSlackKiB what the whole soak may add to the level before.
const (
	rssHalfSlackKiB  = 8 << 10
	rssTotalSlackKiB = 32 << 10
)

// envSoakJobs, when set, is the number of soak jobs, whatever the form.
const envSoakJobs = "JOBLET_SOAK_JOBS"

// footprint is everything the soak counts, before and after.
type footprint struct {
	procs  map[string]procstat.Proc // per service
	counts map[string]int           // kernel objects and state entries, by kind
}

// TestReliabilitySoak runs N short jobs of mixed kinds (default, none,
// isolated and custom networks, limits, uploads, stops, schedules) through
// the package's suite, JOBLET_RELIABILITY=full: 5,000, otherwise 300, and
// expects every count to come back to where it was: each service's fds,
// its threads (within a bound: see below), its RSS (within rssSlack), and
// the suite's cgroups, mounts, netns pins, veths, JOBLET rules, netd
// leases, workspaces and uploads.
func TestReliabilitySoak(t *testing.T) {
	s := needSuite(t)
	n := pick(300, 5000)
	if v := os.Getenv(envSoakJobs); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", envSoakJobs, v)
		}
	}
	tmp := uploadTempDir(t)
	if err := os.WriteFile(filepath.Join(tmp, "up.txt"), []byte("uploaded\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	createNetwork(t, "soaknet", "10.81.0.0/24")

	kinds := []struct {
		name string
		run  func(t *testing.T, i int) (id string, ok bool)
	}{
		{"default", func(t *testing.T, i int) (string, bool) {
			r := rnx(t, "run", "echo", fmt.Sprint(i))
			return idOf(r.stderr), r.code == 0 && r.stdout == fmt.Sprintf("%d\n", i)
		}},
		{"none", func(t *testing.T, i int) (string, bool) {
			r := rnx(t, "run", "--network=none", "echo", fmt.Sprint(i))
			return idOf(r.stderr), r.code == 0 && r.stdout == fmt.Sprintf("%d\n", i)
		}},
		{"custom", func(t *testing.T, i int) (string, bool) {
			r := rnx(t, "run", "--network=soaknet", "cat", "/proc/net/dev")
			return idOf(r.stderr), r.code == 0 && strings.Contains(r.stdout, "eth0")
		}},
		{"isolated", func(t *testing.T, i int) (string, bool) {
			r := rnx(t, "run", "--network=isolated", "true")
			return idOf(r.stderr), r.code == 0
		}},
		{"limits", func(t *testing.T, i int) (string, bool) {
			r := rnx(t, "run", "--max-memory=32", "--max-cpu=50", "--max-pids=32", "echo", fmt.Sprint(i))
			return idOf(r.stderr), r.code == 0 && r.stdout == fmt.Sprintf("%d\n", i)
		}},
		{"upload", func(t *testing.T, i int) (string, bool) {
			r := rnxIn(t, tmp, "run", "--upload=up.txt", "cat", "/work/up.txt")
			return idOf(r.stderr), r.code == 0 && r.stdout == "uploaded\n"
		}},
		{"stop", func(t *testing.T, i int) (string, bool) {
			r := rnx(t, "run", "-d", "sleep", "600")
			id := idOf(r.stdout)
			return id, r.code == 0 && id != "" && rnx(t, "stop", id).code == 0
		}},
		{"schedule", func(t *testing.T, i int) (string, bool) {
			r := rnx(t, "run", "--schedule=1s", "echo", fmt.Sprint(i))
			return idOf(r.stdout), r.code == 0
		}},
	}
	// A round of every kind first, so what a service sets up once (pools,
	// caches, connections to its peers) is in the baseline.
	for i, k := range kinds {
		if _, ok := k.run(t, i); !ok {
			t.Fatalf("warm-up %s job failed", k.name)
		}
	}
	waitAllEnded(t, nil, 30*time.Second)
	base := s.settledFootprint(t)

	const workers = 4
	start := time.Now()
	var mu sync.Mutex
	var ids []string
	failures := map[string]int{}
	phase := func(from, to int) {
		next := make(chan int)
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					k := kinds[i%len(kinds)]
					id, ok := k.run(t, i)
					mu.Lock()
					if !ok {
						failures[k.name]++
					}
					if id != "" {
						ids = append(ids, id)
					}
					mu.Unlock()
				}
			}()
		}
		for i := from; i < to; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		waitAllEnded(t, ids, 60*time.Second)
	}
	phase(0, n/2)
	mid := s.footprint(t)
	phase(n/2, n)
	took := time.Since(start)
	t.Logf("%d jobs (%d workers) in %v, %.1f jobs/s", n, workers, took.Round(time.Millisecond), float64(n)/took.Seconds())
	if len(failures) > 0 {
		t.Errorf("jobs that did not do what they should, by kind: %v", failures)
	}

	// Counts come back; give the services a moment to close what the last
	// jobs used.
	var after footprint
	var diffs []string
	rss := raceFactor() == 1
	if !rss {
		t.Log("race-built daemons: RSS is logged, not compared (the long soak against the normal build compares it)")
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		after = s.footprint(t)
		if diffs = compareFootprints(base, mid, after, rss); len(diffs) == 0 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("before: %s", base)
	t.Logf("half:   %s", mid)
	t.Logf("after:  %s", after)
	for _, d := range diffs {
		t.Errorf("after %d jobs: %s", n, d)
	}
}

// settledFootprint is the footprint once the suite has finished tidying up
// after the jobs before (a job's record ends before its network is
// detached): the same counts and fds twice, a second apart, within 15 s.
func (s *suite) settledFootprint(t *testing.T) footprint {
	t.Helper()
	prev := s.footprint(t)
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		time.Sleep(time.Second)
		cur := s.footprint(t)
		if rss := raceFactor() == 1; len(compareFootprints(prev, cur, cur, rss)) == 0 && len(compareFootprints(cur, prev, prev, rss)) == 0 {
			return cur
		}
		prev = cur
	}
	return prev
}

// idOf is the job id in an rnx header, or "".
func idOf(header string) string {
	if m := idLine.FindStringSubmatch(header); m != nil {
		return m[1]
	}
	return ""
}

// waitAllEnded waits until none of ids (every job, when ids is nil) is
// RUNNING or SCHEDULED.
func waitAllEnded(t *testing.T, ids []string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		jobs := listJSON(t)
		var busy []string
		check := ids
		if check == nil {
			for id := range jobs {
				check = append(check, id)
			}
		}
		for _, id := range check {
			if st := jsonString(jobs[id]); strings.Contains(st, `"RUNNING"`) || strings.Contains(st, `"SCHEDULED"`) {
				busy = append(busy, id)
			}
		}
		if len(busy) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs still running or scheduled after %v: %v", len(busy), within, busy)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// footprint counts what the soak compares.
func (s *suite) footprint(t *testing.T) footprint {
	t.Helper()
	pids, err := s.pids()
	if err != nil {
		t.Fatal(err)
	}
	f := footprint{procs: map[string]procstat.Proc{}, counts: map[string]int{}}
	for svc, pid := range pids {
		p, err := procstat.Read(pid)
		if err != nil {
			t.Fatal(err)
		}
		f.procs[svc] = p
	}
	bases, err := cgroupDirs(pids["isolator"])
	if err != nil {
		t.Fatal(err)
	}
	own := s.cgroupParent()
	parents := 0
	for _, b := range bases {
		if c, err := procstat.Subdirs(filepath.Join(b, own)); err == nil {
			f.counts["cgroups"] += c
			parents++
		}
	}
	if parents == 0 {
		t.Fatalf("the isolator's job cgroup parent %s is in none of %v", own, bases)
	}
	if f.counts["mounts"], err = procstat.MountsMentioning(os.Getpid(), s.devDir); err != nil {
		t.Fatal(err)
	}
	f.counts["netns pins"] = len(names(t, filepath.Join(s.devDir, "run", "netns")))
	f.counts["workspaces"] = len(names(t, filepath.Join(s.devDir, "state", "isolator", "work")))
	f.counts["uploads"] = len(names(t, filepath.Join(s.devDir, "state", "isolator", "uploads")))
	out, err := s.command("ip", "-o", "link", "show", "type", "veth").Output()
	if err != nil {
		t.Fatal(err)
	}
	if o := strings.TrimSpace(string(out)); o != "" {
		f.counts["veths"] = strings.Count(o, "\n") + 1
	} else {
		f.counts["veths"] = 0
	}
	for _, table := range []string{"filter", "nat"} {
		out, err := s.command("iptables", "-t", table, "-S").Output()
		if err != nil {
			t.Fatal(err)
		}
		f.counts["iptables rules"] += strings.Count(string(out), "\n-A ")
	}
	var st struct {
		Leases []json.RawMessage `json:"leases"`
	}
	b, err := os.ReadFile(filepath.Join(s.devDir, "state", "netd", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("netd state.json: %v", err)
	}
	f.counts["netd leases"] = len(st.Leases)
	return f
}

func (f footprint) String() string {
	var parts []string
	var svcs []string
	for svc := range f.procs {
		svcs = append(svcs, svc)
	}
	sort.Strings(svcs)
	for _, svc := range svcs {
		p := f.procs[svc]
		parts = append(parts, fmt.Sprintf("%s fds=%d threads=%d rss=%.1fMiB", svc, p.FDs, p.Threads, float64(p.RSSKiB)/1024))
	}
	var kinds []string
	for k := range f.counts {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s=%d", k, f.counts[k]))
	}
	return strings.Join(parts, "; ")
}

// compareFootprints lists what did not come back. fds and kernel objects
// must be exactly where they were. Threads: Go never ends an OS thread it
// made (it parks it), so a busy service keeps a few more; 32 more than at
// the start is far beyond what 4 concurrent clients need, and a thread
// stuck per job would pass it within the first half. RSS: see
// rssHalfSlackKiB; not compared when rss is false (race-built daemons,
// whose detector memory grows with what it has seen: see raceFactor).
func compareFootprints(base, mid, after footprint, rss bool) []string {
	var out []string
	for svc, b := range base.procs {
		a, ok := after.procs[svc]
		if !ok {
			out = append(out, svc+": gone")
			continue
		}
		if a.FDs != b.FDs {
			out = append(out, fmt.Sprintf("%s: %d fds, %d before", svc, a.FDs, b.FDs))
		}
		if a.Threads > b.Threads+32 {
			out = append(out, fmt.Sprintf("%s: %d threads, %d before", svc, a.Threads, b.Threads))
		}
		if !rss {
			continue
		}
		if m := mid.procs[svc]; a.RSSKiB > m.RSSKiB+rssHalfSlackKiB {
			out = append(out, fmt.Sprintf("%s: RSS %d KiB, %d at half-way: grows with the jobs", svc, a.RSSKiB, m.RSSKiB))
		}
		if a.RSSKiB > b.RSSKiB+rssTotalSlackKiB {
			out = append(out, fmt.Sprintf("%s: RSS %d KiB, %d before", svc, a.RSSKiB, b.RSSKiB))
		}
	}
	for k, b := range base.counts {
		if a := after.counts[k]; a != b {
			out = append(out, fmt.Sprintf("%s: %d, %d before", k, a, b))
		}
	}
	return out
}

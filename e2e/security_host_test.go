package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hostState is what a job must never change on the host (the suite's
// namespaces): its mount table, network interfaces, firewall rules, the
// job cgroups under the isolator's parent and the daemon's binaries.
type hostState struct {
	mounts, links, rules, cgroups, bins string
}

// snapshotHost records the host's state now.
func snapshotHost(t *testing.T, s *suite) hostState {
	t.Helper()
	var bins []string
	for name, sum := range sha256Files(t, s.binDir) {
		bins = append(bins, name+" "+sum)
	}
	slices.Sort(bins)
	return hostState{
		mounts:  hostMounts(t),
		links:   hostLinks(t),
		rules:   hostRules(t),
		cgroups: jobCgroupTree(t, s),
		bins:    strings.Join(bins, "\n"),
	}
}

// diff names the parts of h that differ from o, with both versions.
func (h hostState) diff(o hostState) []string {
	var out []string
	for _, p := range []struct{ name, a, b string }{
		{"mount table", h.mounts, o.mounts},
		{"interfaces", h.links, o.links},
		{"iptables rules", h.rules, o.rules},
		{"job cgroup tree", h.cgroups, o.cgroups},
		{"daemon binaries (sha256)", h.bins, o.bins},
	} {
		if p.a != p.b {
			out = append(out, fmt.Sprintf("%s changed:\nbefore:\n%s\nafter:\n%s", p.name, p.a, p.b))
		}
	}
	return out
}

// hostUnchanged fails t unless the host is back to before within a few
// seconds: a job's veth, cgroup and network namespace pin are removed
// asynchronously after it ends.
func hostUnchanged(t *testing.T, s *suite, before hostState) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d := before.diff(snapshotHost(t, s))
		if len(d) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, m := range d {
				t.Error(m)
			}
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// hostMounts is the suite namespace's mount table, without netd's network
// namespace pins (nsfs), which come and go with jobs.
func hostMounts(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if !strings.Contains(line, " - nsfs ") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// carrier is what a bridge's link line says about its ports: a bridge
// without a veth has no carrier, and takes its address from its ports.
var carrier = regexp.MustCompile(`NO-CARRIER,|,LOWER_UP| state \S+|link/ether \S+`)

// master is the bridge a link line says the link is a port of.
var master = regexp.MustCompile(` master (\S+)`)

// hostLinks lists the interfaces (index, name, flags, MTU, master) and
// their addresses. The veths of the namespaces netd keeps made ahead
// (madeAhead) are listed by their bridge only, sorted after the rest: a
// new one replaces the one a job took, with another name and index, and
// their number per bridge stays.
func hostLinks(t *testing.T) string {
	t.Helper()
	spares := madeAhead(t)
	var links, ahead []string
	for _, l := range strings.Split(carrier.ReplaceAllString(hostCmd(t, "ip", "-o", "link", "show"), ""), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		if _, err := strconv.Atoi(strings.TrimSuffix(f[0], ":")); err != nil {
			continue // "Error: Peer netns reference is invalid." for a veth whose peer's namespace no process is in
		}
		if spares[strings.TrimSuffix(strings.Split(f[1], "@")[0], ":")] {
			m := master.FindStringSubmatch(l)
			if len(m) == 2 {
				ahead = append(ahead, "veth made ahead, master "+m[1])
				continue
			}
		}
		links = append(links, l)
	}
	slices.Sort(ahead)
	return strings.Join(append(links, ahead...), "\n") + "\n" + hostCmd(t, "ip", "-o", "addr", "show")
}

// counters are iptables-save's packet and byte counts.
var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// hostRules is iptables-save without comments and counters.
func hostRules(t *testing.T) string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(hostCmd(t, "iptables-save"), "\n") {
		if !strings.HasPrefix(line, "#") {
			out = append(out, counters.ReplaceAllString(line, ""))
		}
	}
	return strings.Join(out, "\n")
}

// jobCgroupTree lists every directory under this suite's job cgroup parent
// (the isolator's joblet-<hash> directory) in every hierarchy. A waiting
// shim's spare cgroup (cgroup v1) is listed as "_spare-*": a new one
// replaces the one a job took, and its name changes, not their number.
func jobCgroupTree(t *testing.T, s *suite) string {
	t.Helper()
	pids, err := s.pids()
	if err != nil {
		t.Fatal(err)
	}
	bases, err := cgroupDirs(pids["isolator"])
	if err != nil {
		t.Fatal(err)
	}
	own := s.cgroupParent()
	var dirs []string
	for _, base := range bases {
		_ = filepath.WalkDir(filepath.Join(base, own), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				if strings.HasPrefix(d.Name(), "_spare-") {
					p = filepath.Join(filepath.Dir(p), "_spare-*")
				}
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	slices.Sort(dirs)
	return strings.Join(dirs, "\n")
}

// hostCmd runs a command on the host and returns its stdout.
func hostCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}

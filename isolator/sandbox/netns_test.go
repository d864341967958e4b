package sandbox_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// preparedNetns stands in for netd: a network namespace held by a sleeping
// process (stopped at cleanup), with a veth pair netd0/netd1 in it so that the
// job can tell it apart from a fresh one. Only that private namespace is
// changed; the host's is never touched.
func preparedNetns(t *testing.T) string {
	t.Helper()
	holder := exec.Command("unshare", "--net", "sleep", "1000")
	if err := holder.Start(); err != nil {
		t.Skipf("skipping: cannot start unshare: %v", err)
	}
	t.Cleanup(func() {
		_ = holder.Process.Kill()
		_ = holder.Wait()
	})
	path := "/proc/" + strconv.Itoa(holder.Process.Pid) + "/ns/net"
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	// unshare has exec'd sleep once the namespace differs from ours.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ns, err := os.Readlink(path); err == nil && ns != self {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("unshare --net did not make a namespace")
		}
	}
	out, err := exec.Command("nsenter", "--net="+path, "ip", "link", "add", "netd0", "type", "veth", "peer", "name", "netd1").CombinedOutput()
	if err != nil {
		t.Fatalf("add a veth pair in a private namespace: %v %s", err, out)
	}
	return path
}

// threadNetns lists the network namespaces of every thread of this process.
func threadNetns(t *testing.T) map[string]bool {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, task := range tasks {
		if ns, err := os.Readlink(filepath.Join("/proc/self/task", task.Name(), "ns/net")); err == nil {
			seen[ns] = true
		}
	}
	return seen
}

func TestPreparedNetns(t *testing.T) {
	requiresRoot(t)
	path := preparedNetns(t)
	self, _ := os.Readlink("/proc/self/ns/net")
	spec, marker := newSpec(t, "sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' '; echo; cat /etc/resolv.conf; echo ---; cat /etc/hosts; readlink /proc/self/ns/net")
	spec.NetnsPath = path
	spec.ResolvConf = "nameserver 10.99.0.1\n"
	spec.Hosts = "127.0.0.1\tlocalhost\n10.99.0.7\t" + spec.Hostname + "\n"
	j, err := start(t, spec, marker)
	if err != nil {
		t.Fatal(err)
	}
	if res := j.wait(); res.ExitCode != 0 {
		t.Fatalf("%+v, stderr %q", res, j.stderr.String())
	}
	want, _ := os.Readlink(path)
	got := j.stdout.String()
	for _, s := range []string{"lo netd0 netd1 \n", spec.ResolvConf + "---\n", spec.Hosts, want + "\n"} {
		if !strings.Contains(got, s) {
			t.Errorf("job output %q lacks %q", got, s)
		}
	}
	// Every thread of the isolator is back in its own namespace.
	if seen := threadNetns(t); len(seen) != 1 || !seen[self] {
		t.Errorf("threads of the parent are in %v, want only %s", seen, self)
	}
}

func TestPreparedNetnsWithoutResolver(t *testing.T) {
	requiresRoot(t)
	spec, marker := newSpec(t, "sh", "-c", "test ! -e /etc/resolv.conf && cat /etc/hosts")
	spec.NetnsPath = preparedNetns(t)
	spec.Hosts = "127.0.0.1\tlocalhost\n127.0.1.1\t" + spec.Hostname + "\n"
	j, err := start(t, spec, marker)
	if err != nil {
		t.Fatal(err)
	}
	if res := j.wait(); res.ExitCode != 0 || j.stdout.String() != spec.Hosts {
		t.Fatalf("%+v, stdout %q, stderr %q", res, j.stdout.String(), j.stderr.String())
	}
}

func TestBadNetnsPath(t *testing.T) {
	requiresRoot(t)
	for _, path := range []string{"relative/ns", "/nonexistent/ns", "/etc/hostname"} {
		spec, marker := newSpec(t, "true")
		spec.NetnsPath = path
		if j, err := start(t, spec, marker); err == nil {
			j.wait()
			t.Errorf("NetnsPath %q: started", path)
		}
		if pids := markedPids(t, marker); len(pids) != 0 {
			t.Errorf("NetnsPath %q: processes left: %v", path, pids)
		}
	}
}

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// jobRootUID is the host uid of a job's root: the default
// joblet.userNamespace range, which the suite's configuration keeps.
const jobRootUID = 1879048192

// TestUserNamespace: a job's root is uid 0 in a user namespace of its own,
// an unprivileged uid on the host, and owns its workspace.
func TestUserNamespace(t *testing.T) {
	needSuite(t)

	t.Run("root in the job is a mapped host uid", func(t *testing.T) {
		_, r := mustRun(t, "sh", "-c", "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map")
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			got = append(got, strings.Join(strings.Fields(line), " "))
		}
		want := fmt.Sprintf("0|0|0 %d 65536|0 %d 65536", jobRootUID, jobRootUID)
		if strings.Join(got, "|") != want {
			t.Errorf("id and maps in a job: got %q, want %q", got, want)
		}
	})

	t.Run("uploaded files are the job's root's", func(t *testing.T) {
		tmp := uploadTempDir(t)
		secret := filepath.Join(tmp, "secret.txt")
		if err := os.WriteFile(secret, []byte("s\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, r := mustRun(t, "--upload="+secret, "sh", "-c",
			"stat -c %u:%a /work/secret.txt && echo more >> /work/secret.txt && chown 1000:1000 /work/secret.txt && stat -c %u:%g /work/secret.txt && cat /work/secret.txt")
		if want := "0:600\n1000:1000\ns\nmore\n"; r.stdout != want {
			t.Errorf("a job's uploaded 0600 file: got %q, want %q", r.stdout, want)
		}
	})

	t.Run("host root is not the job's", func(t *testing.T) {
		// Signal the init (the host's root), read its environment, set the
		// hostname, reconfigure the network, mount, nest a user namespace.
		for _, c := range []string{
			"kill -0 1", "cat /proc/1/environ", "hostname x", "ip link set lo down",
			"mount -t tmpfs x /tmp", "unshare -U true",
		} {
			if r := rnx(t, "run", "sh", "-c", c); r.code == 0 {
				t.Errorf("%q succeeded in a job: %v", c, r)
			}
		}
	})

	t.Run("a job's processes and files are the mapped uid on the host", func(t *testing.T) {
		marker := fmt.Sprintf("joblet-userns-%d", time.Now().UnixNano())
		id := detach(t, "sh", "-c", "echo x > /work/f && sleep 60", marker)
		t.Cleanup(func() { rnx(t, "stop", id) })
		var pid string
		deadline := time.Now().Add(10 * time.Second)
		for pid == "" && time.Now().Before(deadline) {
			pid = pidWithArg(t, marker)
			if pid != "" {
				if _, err := os.Stat(filepath.Join("/proc", pid, "root/work/f")); err != nil {
					pid = "" // not written yet
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		if pid == "" {
			t.Fatalf("job %s: no process with /work/f within 10 s", id)
		}
		status, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
		if err != nil {
			t.Fatal(err)
		}
		uids := fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d\n", jobRootUID, jobRootUID, jobRootUID, jobRootUID)
		if !strings.Contains(string(status), uids) {
			t.Errorf("the job's shell on the host: want %q in its status:\n%s", uids, status)
		}
		fi, err := os.Stat(filepath.Join("/proc", pid, "root/work/f"))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != jobRootUID || st.Gid != jobRootUID {
			t.Errorf("/work/f written by the job is %d:%d on the host, want %d:%d", st.Uid, st.Gid, jobRootUID, jobRootUID)
		}
		stopJob(t, id)
	})
}

// pidWithArg returns a host process one of whose arguments is arg.
func pidWithArg(t *testing.T, arg string) string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, a := range bytes.Split(b, []byte{0}) {
			if string(a) == arg {
				return e.Name()
			}
		}
	}
	return ""
}

package e2e

import (
	"os"
	"strings"
	"testing"
)

func TestSandbox(t *testing.T) {
	needSuite(t)

	t.Run("sees only its own processes", func(t *testing.T) {
		_, r := mustRun(t, "ps", "-e")
		lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
		// A header, then ps itself and at most the job's init and shell.
		if procs := len(lines) - 1; procs < 1 || procs > 3 {
			t.Errorf("ps -e in a job: want 1 to 3 processes, got %d:\n%s", procs, r.stdout)
		}
	})

	t.Run("host files are not there", func(t *testing.T) {
		for _, p := range []string{"/root", "/etc/shadow", "/home"} {
			if r := rnx(t, "run", "test", "-e", p); r.code != 1 {
				t.Errorf("rnx run test -e %s: want exit 1 (absent), got %v", p, r)
			}
		}
	})

	t.Run("system dirs are read-only", func(t *testing.T) {
		const probe = "/usr/joblet-e2e-probe"
		r := rnx(t, "run", "touch", probe)
		if _, err := os.Stat(probe); err == nil {
			_ = os.Remove(probe)
			t.Fatalf("rnx run touch %s created the file on the host", probe)
		}
		if r.code == 0 || r.code == 127 {
			t.Errorf("rnx run touch %s: want touch to fail (read-only), got %v", probe, r)
		}
	})

	t.Run("work is writable and the working directory", func(t *testing.T) {
		if _, r := mustRun(t, "sh", "-c", "touch /work/x && pwd"); r.stdout != "/work\n" {
			t.Errorf("touch /work/x && pwd: want \"/work\\n\", got %v", r)
		}
	})

	t.Run("hostname is its own", func(t *testing.T) {
		host, err := os.Hostname()
		if err != nil {
			t.Fatal(err)
		}
		_, r := mustRun(t, "hostname")
		if got := strings.TrimSpace(r.stdout); got == "" || got == host {
			t.Errorf("hostname in a job: want a name other than the host's %q, got %v", host, r)
		}
	})

	t.Run("environment holds nothing of the daemon or the client", func(t *testing.T) {
		_, r := mustRun(t, "env")
		// Variables any clean environment may legitimately set to the same value.
		allowed := map[string]bool{"PATH": true, "HOME": true, "TERM": true, "LANG": true,
			"LC_ALL": true, "USER": true, "LOGNAME": true, "SHELL": true, "PWD": true, "SHLVL": true}
		ours := map[string]bool{}
		for _, kv := range os.Environ() {
			ours[kv] = true
		}
		if !strings.Contains("\n"+r.stdout, "\nPATH=") {
			t.Errorf("job environment has no PATH, so this check saw nothing: %q", r.stdout)
		}
		for _, kv := range strings.Split(strings.TrimRight(r.stdout, "\n"), "\n") {
			name, _, _ := strings.Cut(kv, "=")
			switch {
			case strings.HasPrefix(name, "JOBLET_"), strings.HasPrefix(name, "RNX_"):
				t.Errorf("job environment has %q", kv)
			case ours[kv] && !allowed[name]:
				t.Errorf("job environment has %q from the daemon's environment", kv)
			}
		}
	})

	t.Run("network none is loopback only", func(t *testing.T) {
		_, r := mustRun(t, "--network=none", "cat", "/proc/net/dev")
		lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
		var ifaces []string
		for _, l := range lines[min(2, len(lines)):] { // two header lines
			name, _, _ := strings.Cut(l, ":")
			ifaces = append(ifaces, strings.TrimSpace(name))
		}
		if len(ifaces) != 1 || ifaces[0] != "lo" {
			t.Errorf("/proc/net/dev in a job: want only lo, got %q", ifaces)
		}
		_, r = mustRun(t, "--network=none", "ip", "-o", "link")
		links := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
		if f := strings.Fields(links[0]); len(links) != 1 || len(f) < 2 || f[1] != "lo:" {
			t.Errorf("ip -o link in a job: want only lo, got %q", r.stdout)
		}
	})
}

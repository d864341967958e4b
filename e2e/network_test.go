package e2e

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Issue 4, through the real bin/rnx, in the suite's private network
// namespace (netns_test.go): networks, addresses, names, isolation and
// clean-up. A connection attempt gives up after probeTimeout, so a
// blocked path costs at most that.

const (
	probeTimeout = "1.5"
	servicePort  = "8080"
)

// server is a tiny TCP service: it answers every connection with "pong".
const server = `import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080))
s.listen(16)
while True:
    c, _ = s.accept()
    c.sendall(b"pong\n")
    c.close()
`

// client connects to argv[1]:argv[2] and prints what it is told.
const client = `import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=` + probeTimeout + `)
print(c.recv(16).decode().strip())
`

// probe reports whether a job on network reaches host:port (a name or an
// address), as a fresh job that runs the client.
func probe(t *testing.T, network, host, port string) bool {
	t.Helper()
	r := rnx(t, "run", "--network="+network, "python3", "-c", client, host, port)
	return r.code == 0 && strings.TrimSpace(r.stdout) == "pong"
}

// startServer runs the server detached on network with an optional name,
// waits until a job of the same network reaches it, and returns its id and
// address. It is stopped when the test ends.
func startServer(t *testing.T, network, name string) (id, ip string) {
	t.Helper()
	args := []string{"--network=" + network}
	if name != "" {
		args = append(args, "--name="+name)
	}
	id = detach(t, append(args, "python3", "-c", server)...)
	t.Cleanup(func() { rnx(t, "stop", id) })
	ip = statusField(t, id, "IP Address")
	for deadline := time.Now().Add(10 * time.Second); !probe(t, network, ip, servicePort); {
		if time.Now().After(deadline) {
			t.Fatalf("server job %s (%s on %s) never answered", id, ip, network)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return id, ip
}

// interfaces lists the interfaces a job on network sees.
func interfaces(t *testing.T, network string) []string {
	t.Helper()
	_, r := mustRun(t, "--network="+network, "cat", "/proc/net/dev")
	var out []string
	for _, l := range strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")[2:] {
		name, _, _ := strings.Cut(l, ":")
		out = append(out, strings.TrimSpace(name))
	}
	return out
}

// createNetwork creates a custom network, removed when the test ends.
func createNetwork(t *testing.T, name, cidr string) {
	t.Helper()
	if r := rnx(t, "network", "create", name, "--cidr="+cidr); r.code != 0 {
		t.Fatalf("rnx network create %s --cidr=%s: %v", name, cidr, r)
	}
	t.Cleanup(func() { rnx(t, "network", "remove", name) })
}

// veths lists the host ends of job veth pairs in the suite's namespace.
func veths(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show", "type", "veth").Output()
	if err != nil {
		t.Fatalf("ip link: %v", err)
	}
	return notSpares(t, string(out))
}

// notSpares is the veths of an `ip -o link show type veth` listing but
// the host ends of the namespaces netd keeps made ahead for the next jobs
// (netd/manager/spare.go: a pin ".../_spare-X" mounted, its veth "jvX"),
// which stay while no job runs.
func notSpares(t *testing.T, listing string) []string {
	t.Helper()
	spares := madeAhead(t)
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(listing), "\n") {
		// Only "N: name@peer: ..." lines: with the output, ip may print
		// "Error: Peer netns reference is invalid." for a veth whose peer
		// is in a namespace no process is in, as a spare's is.
		f := strings.Fields(l)
		if _, err := strconv.Atoi(strings.TrimSuffix(f[0], ":")); err != nil || len(f) < 2 {
			continue
		}
		if name := strings.TrimSuffix(strings.Split(f[1], "@")[0], ":"); !spares[name] {
			names = append(names, name)
		}
	}
	return names
}

// madeAhead is the host-side veths of the namespaces netd keeps made
// ahead: a pin ".../_spare-X" mounted, its veth "jvX".
func madeAhead(t *testing.T) map[string]bool {
	t.Helper()
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	spares := map[string]bool{}
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(filepath.Base(f[4]), "_spare-") {
			spares["jv"+strings.TrimPrefix(filepath.Base(f[4]), "_spare-")] = true
		}
	}
	return spares
}

func TestNetworks(t *testing.T) {
	s := needSuite(t)

	t.Run("bridge is the default and the job has an address in it", func(t *testing.T) {
		id, r := mustRun(t, "sh", "-c", "cat /proc/net/dev | cut -d: -f1 | tail -n +3 | tr -d ' ' | sort | tr '\\n' ' '")
		if r.stdout != "eth0 lo " {
			t.Errorf("interfaces: %q, want eth0 and lo", r.stdout)
		}
		if n := statusField(t, id, "Network"); n != "bridge" {
			t.Errorf("Network: %q, want bridge", n)
		}
		ip, err := netip.ParseAddr(statusField(t, id, "IP Address"))
		if err != nil || !netip.MustParsePrefix("172.20.0.0/16").Contains(ip) {
			t.Errorf("IP Address %v (%v), want one in 172.20.0.0/16", ip, err)
		}
	})

	t.Run("none has only loopback", func(t *testing.T) {
		if got := interfaces(t, "none"); len(got) != 1 || got[0] != "lo" {
			t.Errorf("interfaces on none: %q, want only lo", got)
		}
	})

	t.Run("unknown network is refused", func(t *testing.T) {
		r := rnx(t, "run", "--network=nope", "true")
		if r.code == 0 || !strings.Contains(r.stderr, `network "nope" does not exist`) {
			t.Errorf("rnx run --network=nope: %v", r)
		}
	})

	t.Run("bridge jobs reach each other by address and by name", func(t *testing.T) {
		_, ip := startServer(t, "bridge", "api")
		for _, host := range []string{ip, "api"} {
			if !probe(t, "bridge", host, servicePort) {
				t.Errorf("a bridge job cannot reach the server at %s", host)
			}
		}
	})

	t.Run("custom networks reach themselves, nothing else", func(t *testing.T) {
		createNetwork(t, "e2e-a", "10.201.0.0/24")
		createNetwork(t, "e2e-b", "10.202.0.0/24")
		id, ipA := startServer(t, "e2e-a", "svc")
		if net := statusField(t, id, "Network"); net != "e2e-a" || !strings.HasPrefix(ipA, "10.201.0.") {
			t.Errorf("server: network %q, address %q", net, ipA)
		}
		if !probe(t, "e2e-a", "svc", servicePort) {
			t.Error("A cannot reach A by name")
		}
		for _, from := range []string{"e2e-b", "bridge", "isolated"} {
			if probe(t, from, ipA, servicePort) {
				t.Errorf("a job on %s reached the server on e2e-a", from)
			}
		}
	})

	t.Run("isolated reaches no job", func(t *testing.T) {
		_, ip := startServer(t, "bridge", "")
		if probe(t, "isolated", ip, servicePort) {
			t.Error("an isolated job reached a bridge job")
		}
		// Nor another isolated job.
		iso := detach(t, "--network=isolated", "python3", "-c", server)
		defer rnx(t, "stop", iso)
		isoIP := statusField(t, iso, "IP Address")
		time.Sleep(500 * time.Millisecond) // the server is listening by then, were it reachable
		if probe(t, "isolated", isoIP, servicePort) {
			t.Error("an isolated job reached another isolated job")
		}
	})

	t.Run("the gateway is not reachable from a job", func(t *testing.T) {
		for _, host := range []string{"172.20.0.1", "127.0.0.1"} {
			if probe(t, "bridge", host, strconv.Itoa(s.port)) {
				t.Errorf("a job reached the gateway's port on %s", host)
			}
		}
	})

	t.Run("bad networks are refused clearly", func(t *testing.T) {
		createNetwork(t, "e2e-c", "10.203.0.0/24")
		for _, tc := range []struct{ name, cidr, want string }{
			{"e2e-d", "10.203.0.128/25", "overlap"},
			{"e2e-d", "172.20.5.0/24", "overlap"},
			{"e2e-d", "10.204.0.5/24", "10.204.0.0/24"},
			{"e2e-d", "not-a-cidr", "CIDR"},
			{"bridge", "10.205.0.0/24", "reserved"},
			{"host", "10.205.0.0/24", "reserved"},
			{"Bad_Name", "10.205.0.0/24", "name"},
			{"e2e-c", "10.206.0.0/24", "exists"},
		} {
			r := rnx(t, "network", "create", tc.name, "--cidr="+tc.cidr)
			if r.code == 0 || !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(tc.want)) {
				t.Errorf("network create %s --cidr=%s: want an error mentioning %q, got %v", tc.name, tc.cidr, tc.want, r)
			}
			oneLine(t, "network create error", r.stderr)
		}
	})

	t.Run("a network in use cannot be removed", func(t *testing.T) {
		if r := rnx(t, "network", "create", "e2e-rm", "--cidr=10.207.0.0/24"); r.code != 0 {
			t.Fatalf("create: %v", r)
		}
		id := detach(t, "--network=e2e-rm", "sleep", "60")
		if r := rnx(t, "network", "remove", "e2e-rm"); r.code == 0 || !strings.Contains(r.stderr, "e2e-rm") {
			t.Errorf("remove while a job uses it: %v", r)
		}
		stopJob(t, id)
		// The job's network is released just after it ended.
		var r result
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if r = rnx(t, "network", "remove", "e2e-rm"); r.code == 0 || time.Now().After(deadline) {
				break
			}
		}
		if r.code != 0 {
			t.Fatalf("remove once no job uses it: %v", r)
		}
		if l := rnx(t, "network", "list"); strings.Contains(l.stdout, "e2e-rm") {
			t.Errorf("removed network still listed: %v", l)
		}
	})
}

// Runs after TestNetworks (file order): once every job has ended, no veth
// pair is left in the suite's namespace.
func TestNetworksNoVethLeft(t *testing.T) {
	needSuite(t)
	var left []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		running := false
		for _, j := range listJSON(t) {
			if st, _ := j["status"].(string); st == "RUNNING" {
				running = true
			}
		}
		if left = veths(t); !running && len(left) == 0 {
			return
		}
	}
	t.Errorf("veth pairs left after the jobs ended: %v", left)
}

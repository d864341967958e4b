package manager

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	netddns "github.com/joblet-dev/joblet/netd/dns"
	"github.com/joblet-dev/joblet/netd/firewall"
	"github.com/joblet-dev/joblet/netd/nsfile"
	"github.com/joblet-dev/joblet/proto/netdapi"
)

// The fake outside world: a namespace behind the test host's uplink, with
// a service on extAddr. It has no route to any job network, so only NAT
// lets jobs reach it.
const (
	uplinkAddr = "203.0.113.2"
	extAddr    = "203.0.113.1"
	extService = extAddr + ":8080"
)

type env struct {
	opts Options
	ext  string // pin of the outside world's namespace
}

// setup prepares a clean test host (no joblet links left by an earlier
// test), the outside world and netd's directories, with a fake upstream
// resolver that knows "example.test".
func setup(t testing.TB) *env {
	t.Helper()
	requireRoot(t)
	links, _ := netlink.LinkList()
	for _, l := range links {
		if n := l.Attrs().Name; strings.HasPrefix(n, "joblet") || strings.HasPrefix(n, "jv") || n == "up0" {
			netlink.LinkDel(l)
		}
	}
	dir := t.TempDir()
	e := &env{opts: Options{
		RunDir: filepath.Join(dir, "run"), StateDir: filepath.Join(dir, "state", "netd"),
		ResolvConf: filepath.Join(dir, "resolv.conf"), Log: zerolog.New(zerolog.NewTestWriter(t)),
		// No namespaces made ahead, so that each test's count of veth
		// pairs, pins and addresses is its jobs'; spare_test.go and
		// TestReachability make them.
		Spares: -1,
	}}
	os.WriteFile(e.opts.ResolvConf, []byte("nameserver 127.0.0.1\n"), 0o644)
	up, err := netddns.Start(netip.MustParseAddrPort("127.0.0.1:53"), nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	up.Set("example.test", netip.MustParseAddr(extAddr))
	t.Cleanup(func() { up.Close() })

	e.ext = filepath.Join(dir, "ext")
	if err := nsfile.Create(e.ext); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Whatever a test left pinned must not outlive it.
		pins, _ := filepath.Glob(filepath.Join(e.opts.RunDir, "netns", "*"))
		for _, p := range append(pins, e.ext) {
			nsfile.Remove(p)
		}
	})
	extNS, err := nsfile.Open(e.ext)
	if err != nil {
		t.Fatal(err)
	}
	defer extNS.Close()
	must(t, netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "up0"}, PeerName: "ext0", PeerNamespace: netlink.NsFd(int(extNS))}))
	up0, _ := netlink.LinkByName("up0")
	must(t, netlink.AddrAdd(up0, mustAddr(uplinkAddr+"/24")))
	must(t, netlink.LinkSetUp(up0))
	must(t, netlink.RouteAdd(&netlink.Route{LinkIndex: up0.Attrs().Index, Gw: net.ParseIP(extAddr)}))
	h, err := netlink.NewHandleAt(extNS)
	must(t, err)
	defer h.Close()
	for _, name := range []string{"lo", "ext0"} {
		l, err := h.LinkByName(name)
		must(t, err)
		must(t, h.LinkSetUp(l))
	}
	ext0, _ := h.LinkByName("ext0")
	must(t, h.AddrAdd(ext0, mustAddr(extAddr+"/24")))
	serve(t, e.ext, extService)
	return e
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustAddr(s string) *netlink.Addr {
	a, err := netlink.ParseAddr(s)
	if err != nil {
		panic(err)
	}
	return a
}

func (e *env) open(t testing.TB) *Manager {
	t.Helper()
	m, err := Open(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// inNetns runs fn on a thread inside the namespace pinned at path ("" is
// the test host). A thread that cannot be put back is left locked, so it
// dies with its goroutine instead of serving other goroutines.
func inNetns(path string, fn func()) {
	if path == "" {
		fn()
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			panic(err)
		}
		defer orig.Close()
		target, err := netns.GetFromPath(path)
		if err != nil {
			panic(err)
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			panic(err)
		}
		fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	<-done
}

// serve listens on addr inside a namespace and answers every connection
// with the address it came from.
func serve(t testing.TB, nsPath, addr string) {
	t.Helper()
	var l net.Listener
	var err error
	inNetns(nsPath, func() { l, err = net.Listen("tcp4", addr) })
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(c.RemoteAddr().String() + "\n"))
			c.Close()
		}
	}()
}

// dial connects from a namespace to addr and returns the peer's view of our
// address, or an error.
func dial(nsPath, addr string, timeout time.Duration) (string, error) {
	var c net.Conn
	var err error
	inNetns(nsPath, func() { c, err = net.DialTimeout("tcp4", addr, timeout) })
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// resolve asks the job's DNS server (its gateway) for name's A record.
func resolve(nsPath, server, name string) (string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	var resp *dns.Msg
	var err error
	inNetns(nsPath, func() {
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		resp, _, err = c.ExchangeContext(ctx, m, net.JoinHostPort(server, "53"))
	})
	if err != nil {
		return "", err
	}
	for _, rr := range resp.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String(), nil
		}
	}
	return "", &net.DNSError{Err: dns.RcodeToString[resp.Rcode], Name: name, IsNotFound: true}
}

// freshNetns pins a new namespace with lo up, as a job's init makes when
// its attachment has no NetnsPath (the none network).
func freshNetns(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fresh")
	must(t, nsfile.Create(path))
	t.Cleanup(func() { nsfile.Remove(path) })
	ns, err := nsfile.Open(path)
	must(t, err)
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	must(t, err)
	defer h.Close()
	lo, err := h.LinkByName("lo")
	must(t, err)
	must(t, h.LinkSetUp(lo))
	return path
}

// linksIn lists the interface names inside a namespace.
func linksIn(t *testing.T, nsPath string) []string {
	t.Helper()
	ns, err := nsfile.Open(nsPath)
	must(t, err)
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	must(t, err)
	defer h.Close()
	links, err := h.LinkList()
	must(t, err)
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names
}

// hostLinks lists the test host's interfaces with a prefix.
func hostLinks(t *testing.T, prefix string) []string {
	t.Helper()
	links, err := netlink.LinkList()
	must(t, err)
	var names []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix) {
			names = append(names, l.Attrs().Name)
		}
	}
	return names
}

// rules is the test host's iptables rules, filter and nat.
func rules(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, table := range []string{"filter", "nat"} {
		out, err := exec.Command("iptables", "-w", "-t", table, "-S").CombinedOutput()
		if err != nil {
			t.Fatalf("iptables -S: %v %s", err, out)
		}
		b.Write(out)
	}
	return b.String()
}

type netdapiNetwork = netdapi.Network

func firewallNet(name, bridge, cidr string) firewall.Net {
	return firewall.Net{Name: name, Bridge: bridge, CIDR: netip.MustParsePrefix(cidr)}
}

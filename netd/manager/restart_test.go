package manager

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/joblet-dev/joblet/netd/nsfile"
)

// TestRestart stops netd while jobs run (its sockets close, as when it is
// killed; the kernel state stays) and opens a new instance on the same
// state: networks, leases, names and live connections survive, and what is
// missing or no longer owned is put right.
func TestRestart(t *testing.T) {
	e := setup(t)
	m1, err := Open(e.opts)
	must(t, err)
	ctx := context.Background()
	if _, err := m1.CreateNetwork(ctx, "keep", "10.60.0.0/24"); err != nil {
		t.Fatal(err)
	}
	srv := attach(t, m1, "s1", "keep", "srv")
	cli := attach(t, m1, "c1", "keep", "")
	iso := attach(t, m1, "i1", "isolated", "")

	// A long-lived connection from cli to srv, across the restart.
	var l net.Listener
	inNetns(srv.NetnsPath, func() { l, err = net.Listen("tcp4", srv.IP+":7100") })
	must(t, err)
	defer l.Close()
	echoed := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('\n')
		echoed <- line
	}()
	var conn net.Conn
	inNetns(cli.NetnsPath, func() { conn, err = net.DialTimeout("tcp4", srv.IP+":7100", time.Second) })
	must(t, err)
	defer conn.Close()

	before := rules(t)
	must(t, m1.Close())

	m2 := e.open(t)
	if after := rules(t); after != before {
		t.Errorf("restart changed the rules:\n%s\nbefore:\n%s", after, before)
	}
	if _, err := conn.Write([]byte("still here\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-echoed:
		if got != "still here\n" {
			t.Errorf("got %q", got)
		}
	case <-time.After(2 * time.Second):
		t.Error("connection across the restart is dead")
	}
	nets, _ := m2.ListNetworks(ctx)
	if i := slices.IndexFunc(nets, func(n netdapiNetwork) bool { return n.Name == "keep" }); i < 0 || nets[i].Jobs != 2 {
		t.Errorf("networks after restart: %+v", nets)
	}
	if ip, err := resolve(cli.NetnsPath, cli.Gateway, "srv"); err != nil || ip != srv.IP {
		t.Errorf("name after restart: %q %v", ip, err)
	}
	if _, err := dial(iso.NetnsPath, extService, time.Second); err != nil {
		t.Errorf("isolated job lost the outside: %v", err)
	}
	// Attaching the same job again returns its attachment.
	if a, err := m2.Attach(ctx, "c1", "keep", ""); err != nil || a != cli {
		t.Errorf("re-attach after restart: %+v %v", a, err)
	}
	// A new job does not get a leased address.
	if a := attach(t, m2, "n1", "keep", ""); a.IP == srv.IP || a.IP == cli.IP {
		t.Errorf("new job got a leased address %s", a.IP)
	}
	must(t, m2.Close())

	// While netd is down: a job's veth pair vanishes, and leftovers of
	// another life appear (a bridge, a veth pair, a namespace pin, rules).
	must(t, deleteLink(vethName("s1")))
	must(t, netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "joblet-old"}}))
	must(t, netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "jvdead"}, PeerName: "jvdeadp"}))
	must(t, nsfile.Create(filepath.Join(e.opts.RunDir, "netns", "gone")))
	must(t, m2.fw.Add(firewallNet("old", "joblet-old", "10.99.0.0/24")))

	m3 := e.open(t)
	if after := rules(t); after != before {
		t.Errorf("reconcile left rules:\n%s\nwant:\n%s", after, before)
	}
	if got := hostLinks(t, "joblet-old"); len(got) != 0 {
		t.Errorf("stale bridge kept: %v", got)
	}
	if got := hostLinks(t, "jvdead"); len(got) != 0 {
		t.Errorf("stale veth kept: %v", got)
	}
	if _, err := os.Stat(filepath.Join(e.opts.RunDir, "netns", "gone")); !os.IsNotExist(err) {
		t.Errorf("stale pin kept: %v", err)
	}
	if _, err := dial(cli.NetnsPath, srv.IP+probe, time.Second); err != nil {
		t.Errorf("restored job unreachable: %v", err)
	}
	detachAll(t, m3)
	if got := hostLinks(t, "jv"); len(got) != 0 || strings.Contains(rules(t), "joblet:old") {
		t.Errorf("left after detaching all: %v", got)
	}
}

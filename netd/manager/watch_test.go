package manager

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vishvananda/netlink"
)

// Someone else flushes the filter and nat tables while jobs run (as a
// firewall reload or `iptables -F` does), then deletes a network's bridge
// and a job's veth pair: each time netd puts back exactly what it had
// within its check interval, and the jobs reach each other, their names
// and the outside again.
func TestRestoresWhatOthersRemove(t *testing.T) {
	e := setup(t)
	const interval = 500 * time.Millisecond
	e.opts.CheckInterval = interval
	// The rules' restores, counted from netd's log: the checker may put
	// the rules back before the test has looked at the flushed tables.
	ruleRestores := &countingWriter{w: zerolog.NewTestWriter(t), match: []byte("iptables rules were flushed or changed by someone else")}
	e.opts.Log = zerolog.New(ruleRestores)
	m := e.open(t)
	ctx := context.Background()
	if _, err := m.CreateNetwork(ctx, "web", "10.70.0.0/24"); err != nil {
		t.Fatal(err)
	}
	srv := attach(t, m, "w1", "web", "srv")
	cli := attach(t, m, "w2", "web", "")
	br := attach(t, m, "b1", "bridge", "")
	want, wantLinks := rules(t), hostLinks(t, "j")
	slices.Sort(wantLinks)

	// works checks that the jobs reach each other, the outside and their
	// names; a path just restored may lose its first ARP request, so each
	// check gets a few tries.
	works := func(when string) {
		t.Helper()
		try := func(what string, f func() error) {
			t.Helper()
			var err error
			for range 4 {
				if err = f(); err == nil {
					return
				}
			}
			t.Errorf("%s: %s: %v", when, what, err)
		}
		try("job to job", func() error { _, err := dial(cli.NetnsPath, srv.IP+probe, time.Second); return err })
		for _, a := range []string{cli.NetnsPath, br.NetnsPath} {
			try("job to the outside from "+a, func() error { _, err := dial(a, extService, time.Second); return err })
		}
		try("name", func() error {
			ip, err := resolve(cli.NetnsPath, cli.Gateway, "srv")
			if err == nil && ip != srv.IP {
				return fmt.Errorf("srv is %s, want %s", ip, srv.IP)
			}
			return err
		})
	}
	// restored waits until the rules and links are netd's again and
	// reports how long that took.
	restored := func(what string) {
		t.Helper()
		start := time.Now()
		deadline := start.Add(3 * interval)
		for {
			got := rules(t)
			links, err := settledLinks() // an error: changing while listed
			slices.Sort(links)
			if err == nil && got == want && slices.Equal(links, wantLinks) {
				t.Logf("%s: restored after %v", what, time.Since(start).Round(time.Millisecond))
				works("after " + what)
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not restored within %v; links %v, rules:\n%s\nwant:\n%s", what, 3*interval, links, got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	works("before")

	for _, table := range []string{"filter", "nat"} {
		if out, err := exec.Command("iptables", "-w", "-t", table, "-F").CombinedOutput(); err != nil {
			t.Fatalf("iptables -F: %v %s", err, out)
		}
	}
	restored("iptables -F of filter and nat")
	if ruleRestores.count() == 0 {
		t.Fatal("the flush was not seen: netd logged no restore of its rules")
	}

	for _, table := range []string{"filter", "nat"} {
		exec.Command("iptables", "-w", "-t", table, "-F").Run()
		exec.Command("iptables", "-w", "-t", table, "-X").Run()
	}
	restored("iptables -F and -X")

	must(t, deleteLink(bridgeName("web")))
	must(t, deleteLink(vethName("w1")))
	restored("the web bridge and a job's veth pair deleted")
}

// settledLinks lists the test host's joblet links (bridges and veths); an
// error when they changed while being listed.
func settledLinks() ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "j") {
			names = append(names, l.Attrs().Name)
		}
	}
	return names, nil
}

// countingWriter passes log lines on to w and counts those containing
// match.
type countingWriter struct {
	w     io.Writer
	match []byte
	mu    sync.Mutex
	n     int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, c.match) {
		c.mu.Lock()
		c.n++
		c.mu.Unlock()
	}
	return c.w.Write(p)
}

func (c *countingWriter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// The periodic check lists the rules without the manager's lock: an attach
// never waits for a slow iptables. iptables is wrapped so that, once the
// test arms it, a listing of JOBLET-IN blocks until the test releases it.
func TestAttachDoesNotWaitForTheCheck(t *testing.T) {
	real, err := exec.LookPath("iptables")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	armed, entered, release := filepath.Join(dir, "armed"), filepath.Join(dir, "entered"), filepath.Join(dir, "release")
	script := fmt.Sprintf(`#!/bin/sh
if [ -e %[1]s ]; then
	case " $* " in *" -S JOBLET-IN "*) : > %[2]s; while [ ! -e %[3]s ]; do sleep 0.01; done ;; esac
fi
exec %[4]s "$@"
`, armed, entered, release, real)
	if err := os.WriteFile(filepath.Join(dir, "iptables"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	e := setup(t)
	e.opts.CheckInterval = 20 * time.Millisecond
	m := e.open(t)
	// Released before the manager is closed (cleanups run last first),
	// which waits for the check under way.
	t.Cleanup(func() { os.WriteFile(release, nil, 0o644) })
	if err := os.WriteFile(armed, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(entered); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the periodic check never listed JOBLET-IN")
		}
	}
	for _, network := range []string{"none", "bridge"} {
		done := make(chan error, 1)
		go func() {
			_, err := m.Attach(context.Background(), "job-"+network, network, "")
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("attach to %s: %v", network, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("attach to %s waits for the periodic check's iptables", network)
		}
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	detachAll(t, m)
}

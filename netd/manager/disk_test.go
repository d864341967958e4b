package manager

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/joblet-dev/joblet/proto/errdefs"
	"github.com/joblet-dev/joblet/proto/testkit/smalldisk"
)

// With netd's state directory on a full disk (a 256 KiB tmpfs, in the
// test's private mount namespace), a new network or job is refused with a
// clear ResourceExhausted error and leaves no bridge, lease or rule behind;
// the saved state and what is running are untouched, listings are still
// answered, and everything works again once there is space. A Detach needs
// no write (it unpins the job's namespace, which ends the lease whatever
// the file says): it answers, the job's address stays taken until the
// file no longer holds its lease, and that save is done once there is
// space again.
func TestStateDiskFull(t *testing.T) {
	e := setup(t)
	must(t, os.MkdirAll(e.opts.StateDir, 0o700))
	smalldisk.Mount(t, e.opts.StateDir, "256k")
	e.opts.CheckInterval = -1
	m := e.open(t)
	ctx := context.Background()
	if _, err := m.CreateNetwork(ctx, "kept", "10.80.0.0/24"); err != nil {
		t.Fatal(err)
	}
	a1 := attach(t, m, "k1", "kept", "")
	a0 := attach(t, m, "k0", "kept", "")
	saved, err := os.ReadFile(filepath.Join(e.opts.StateDir, "state.json"))
	must(t, err)
	rulesBefore, linksBefore := rules(t), strings.Join(hostLinks(t, "j"), " ")

	filler := smalldisk.Fill(t, e.opts.StateDir)
	full := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "no space left on the server's state disk") {
			t.Errorf("%s on a full disk: %v, want a clear ResourceExhausted", what, err)
		}
	}
	_, err = m.CreateNetwork(ctx, "new", "10.81.0.0/24")
	full("create network", err)
	_, err = m.Attach(ctx, "k2", "kept", "")
	full("attach", err)
	if err := m.Detach(ctx, "k0"); err != nil {
		t.Errorf("detach on a full disk: %v", err)
	}
	if _, err := os.Stat(a0.NetnsPath); !os.IsNotExist(err) {
		t.Errorf("detached job's pin on a full disk: %v", err)
	}

	if got, _ := os.ReadFile(filepath.Join(e.opts.StateDir, "state.json")); string(got) != string(saved) {
		t.Errorf("saved state changed on a full disk:\n%s\nwant:\n%s", got, saved)
	}
	if got := rules(t); got != rulesBefore {
		t.Errorf("rules changed by refused calls:\n%s\nwant:\n%s", got, rulesBefore)
	}
	if got := strings.Join(hostLinks(t, "j"), " "); got != linksBefore {
		t.Errorf("links %s, want %s (the detached job's veth kept until its lease is out of the file)", got, linksBefore)
	}
	nets, err := m.ListNetworks(ctx)
	if err != nil || len(nets) != 4 || nets[3].Name != "kept" || nets[3].Jobs != 1 { // none, bridge, isolated, kept
		t.Errorf("list on a full disk: %v %v", nets, err)
	}
	if _, err := dial(a1.NetnsPath, extService, 2*time.Second); err != nil {
		t.Errorf("running job lost its network: %v", err)
	}

	must(t, os.Remove(filler))
	deadline := time.Now().Add(5 * time.Second)
	for {
		m.mu.Lock()
		tearing := m.nets["kept"].tearing
		m.mu.Unlock()
		if tearing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the detached job's lease was not saved away once there was space")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, ok := savedLeases(t, m)["k0"]; ok {
		t.Errorf("detached job still saved once there was space")
	}
	if _, err := m.CreateNetwork(ctx, "new", "10.81.0.0/24"); err != nil {
		t.Errorf("create network once space is back: %v", err)
	}
	a2 := attach(t, m, "k2", "kept", "")
	if _, err := dial(a2.NetnsPath, a1.IP+probe, 2*time.Second); err != nil {
		t.Errorf("new job after recovery: %v", err)
	}
	detachAll(t, m)
	must(t, m.RemoveNetwork(ctx, "new"))
	must(t, m.RemoveNetwork(ctx, "kept"))
}

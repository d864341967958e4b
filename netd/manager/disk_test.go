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
// answered, and everything works again once there is space.
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
	full("detach", m.Detach(ctx, "k1"))

	if got, _ := os.ReadFile(filepath.Join(e.opts.StateDir, "state.json")); string(got) != string(saved) {
		t.Errorf("saved state changed on a full disk:\n%s\nwant:\n%s", got, saved)
	}
	if got := rules(t); got != rulesBefore {
		t.Errorf("rules changed by refused calls:\n%s\nwant:\n%s", got, rulesBefore)
	}
	if got := strings.Join(hostLinks(t, "j"), " "); got != linksBefore {
		t.Errorf("links %s, want %s", got, linksBefore)
	}
	nets, err := m.ListNetworks(ctx)
	if err != nil || len(nets) != 4 || nets[3].Name != "kept" || nets[3].Jobs != 1 { // none, bridge, isolated, kept
		t.Errorf("list on a full disk: %v %v", nets, err)
	}
	if _, err := dial(a1.NetnsPath, extService, 2*time.Second); err != nil {
		t.Errorf("running job lost its network: %v", err)
	}

	must(t, os.Remove(filler))
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

package manager

import (
	"context"
	"testing"
	"time"
)

// Detach answers once the job no longer counts on its network; its veth
// pair goes after that. RemoveNetwork and an Attach to the full network
// wait for that teardown instead of refusing. The kernel work is held
// back by filling netd's kernel-work slots, so the order is certain.
func TestDetachAnswersBeforeTheTeardown(t *testing.T) {
	e := setup(t)
	m := e.open(t)
	ctx := context.Background()
	if _, err := m.CreateNetwork(ctx, "one", "10.40.0.0/29"); err != nil { // room for five jobs
		t.Fatal(err)
	}
	first := attach(t, m, "d1", "one", "")
	for _, id := range []string{"f2", "f3", "f4", "f5"} {
		attach(t, m, id, "one", "")
	}

	hold := func() (release func()) {
		for range kernelWorkers {
			m.kernel <- struct{}{}
		}
		return func() {
			for range kernelWorkers {
				<-m.kernel
			}
		}
	}
	detach := func(id string) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- m.Detach(ctx, id) }()
		select {
		case err := <-done:
			must(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("Detach waited for the kernel work")
		}
	}

	release := hold()
	detach("d1")
	nets, _ := m.ListNetworks(ctx)
	for _, n := range nets {
		if n.Name == "one" && n.Jobs != 4 {
			t.Errorf("network one counts %d jobs after the Detach, want 4", n.Jobs)
		}
	}
	if got := hostLinks(t, "jv"); len(got) != 5 {
		t.Fatalf("veths while the teardown is held: %v, want the five jobs'", got)
	}
	attached := make(chan string, 1)
	go func() {
		a, err := m.Attach(ctx, "d2", "one", "")
		if err != nil {
			t.Errorf("attach to the full network while its last job is torn down: %v", err)
		}
		attached <- a.IP
	}()
	select {
	case ip := <-attached:
		t.Fatalf("Attach got %q before the address was freed", ip)
	case <-time.After(300 * time.Millisecond):
	}
	release()
	select {
	case ip := <-attached:
		if ip != first.IP {
			t.Errorf("second job got %s, want the freed %s", ip, first.IP)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Attach still waiting after the teardown")
	}

	// RemoveNetwork waits for the teardowns, and each teardown saves the
	// state first. RemoveNetwork is made to wait for the save lock ahead
	// of the teardowns' saves, so it gets it first; holding it while it
	// waits for them left them, and itself, waiting for good.
	release = hold()
	m.saveMu.Lock()
	removed := make(chan error, 1)
	go func() { removed <- m.RemoveNetwork(ctx, "one") }()
	time.Sleep(100 * time.Millisecond) // queued on the save lock
	for _, id := range []string{"d2", "f2", "f3", "f4", "f5"} {
		detach(id)
	}
	m.saveMu.Unlock()
	select {
	case err := <-removed:
		t.Fatalf("RemoveNetwork answered (%v) while a teardown was under way", err)
	case <-time.After(300 * time.Millisecond):
	}
	release()
	select {
	case err := <-removed:
		must(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("RemoveNetwork still waiting after the teardown")
	}
	if got := hostLinks(t, "jv"); len(got) != 0 {
		t.Errorf("veths left once the network is removed: %v", got)
	}
}

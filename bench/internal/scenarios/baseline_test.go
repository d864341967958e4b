package scenarios

import (
	"os/exec"
	"slices"
	"testing"
)

func TestCommandLatency(t *testing.T) {
	d, err := CommandLatency(ForkExec, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != 5 {
		t.Fatalf("got %d samples, want 5 (warm-up runs not counted)", len(d))
	}
	for _, x := range d {
		if x <= 0 {
			t.Errorf("sample %v is not positive", x)
		}
	}
	if _, err := CommandLatency([]string{"/bin/false"}, 1); err == nil {
		t.Error("a failing baseline command gave no error")
	}
}

func TestBwrapNetworkFlag(t *testing.T) {
	if !slices.Contains(Bwrap(false), "--share-net") || slices.Contains(Bwrap(true), "--share-net") {
		t.Errorf("Bwrap(false) must keep the network and Bwrap(true) must not:\n%v\n%v", Bwrap(false), Bwrap(true))
	}
	if _, err := exec.LookPath("bwrap"); err != nil {
		t.Skip("bwrap not installed (make bench installs bubblewrap)")
	}
	if _, err := CommandLatency(Bwrap(false), 1); err != nil {
		t.Errorf("bwrap baseline does not run: %v", err)
	}
}

func TestPipeDrain(t *testing.T) {
	if d, err := PipeDrain(1 << 20); err != nil || d <= 0 {
		t.Errorf("PipeDrain = %v, %v", d, err)
	}
}

func TestMakeTree(t *testing.T) {
	dir := t.TempDir()
	n, err := MakeTree(dir, 12, 1000)
	if err != nil || n != 12000 {
		t.Fatalf("MakeTree = %d, %v; want 12000", n, err)
	}
}

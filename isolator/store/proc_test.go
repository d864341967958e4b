package store

import (
	"os"
	"os/exec"
	"testing"
)

func TestIdentify(t *testing.T) {
	me, err := Identify(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !me.Alive() {
		t.Fatal("this process is not alive")
	}
	other := me
	other.StartTicks++ // the same pid, reused by another process
	if other.Alive() {
		t.Fatal("a reused pid passed for the original process")
	}
	other = me
	other.BootID = "another boot"
	if other.Alive() {
		t.Fatal("a process from another boot passed as alive")
	}
	if (Proc{}).Alive() {
		t.Fatal("the zero Proc is alive")
	}

	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p, err := Identify(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if p.Alive() {
		t.Fatal("an exited process is alive")
	}
}

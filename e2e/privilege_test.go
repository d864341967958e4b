package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestGatewayIsUnprivileged(t *testing.T) {
	s := needSuite(t)
	pids, err := s.pids()
	if err != nil {
		t.Fatal(err)
	}
	pid := pids["gateway"]
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("gateway pid %d from pids.json: %v", pid, err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		fields[k] = strings.TrimSpace(v)
	}
	for _, uid := range strings.Fields(fields["Uid"]) {
		if uid == "0" {
			t.Errorf("gateway (pid %d) runs with uid 0: Uid: %s", pid, fields["Uid"])
			break
		}
	}
	if fields["Uid"] == "" {
		t.Errorf("gateway (pid %d): no Uid line in its status", pid)
	}
	if got := fields["CapEff"]; got != "0000000000000000" {
		t.Errorf("gateway (pid %d): CapEff: %q, want 0000000000000000", pid, got)
	}
}

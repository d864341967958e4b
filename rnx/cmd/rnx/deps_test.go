package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps rnx a plain client: it must not link the privileged side
// (netlink, iptables, cgroups, seccomp, capabilities, mount tables) or any
// daemon's packages.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	banned := []string{
		"github.com/vishvananda/netlink",
		"github.com/vishvananda/netns",
		"github.com/coreos/go-iptables",
		"github.com/opencontainers/cgroups",
		"github.com/opencontainers/runc",
		"github.com/joblet-dev/joblet/isolator",
		"github.com/joblet-dev/joblet/logd",
		"github.com/joblet-dev/joblet/netd",
		"github.com/joblet-dev/joblet/gateway",
		"github.com/joblet-dev/joblet/supervisor",
		"github.com/joblet-dev/joblet/scheduler",
		"github.com/hashicorp/go-plugin",
		"github.com/elastic/go-seccomp-bpf",
		"github.com/seccomp/libseccomp-golang",
		"github.com/moby/sys/capability",
		"github.com/syndtr/gocapability",
		"github.com/moby/sys/mountinfo",
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps printed too little to trust: %q", out)
	}
	for _, dep := range deps {
		for _, b := range banned {
			if dep == b || strings.HasPrefix(dep, b+"/") {
				t.Errorf("rnx links %s", dep)
			}
		}
	}
}

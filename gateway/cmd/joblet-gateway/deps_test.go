package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoPrivilegedDependencies keeps the gateway free of the code that only
// the root helpers should link: network, firewall, cgroup and isolator
// packages, seccomp, capabilities, mount tables, the other daemons. A
// gateway that links them is one step from using them.
func TestNoPrivilegedDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH; cannot list the gateway's dependencies")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	forbidden := []string{
		"github.com/vishvananda/netlink",
		"github.com/vishvananda/netns",
		"github.com/coreos/go-iptables",
		"github.com/opencontainers/cgroups",
		"github.com/opencontainers/runc",
		"github.com/joblet-dev/joblet/isolator",
		"github.com/joblet-dev/joblet/logd",
		"github.com/joblet-dev/joblet/netd",
		"github.com/joblet-dev/joblet/scheduler",
		"github.com/joblet-dev/joblet/supervisor",
		"github.com/miekg/dns",
		"github.com/elastic/go-seccomp-bpf",
		"github.com/seccomp/libseccomp-golang",
		"github.com/moby/sys/capability",
		"github.com/syndtr/gocapability",
		"github.com/moby/sys/mountinfo",
	}
	var sawService bool
	for _, d := range deps {
		if d == "github.com/joblet-dev/joblet/gateway/service" {
			sawService = true
		}
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("joblet-gateway links %s", d)
			}
		}
	}
	if !sawService {
		t.Fatalf("go list output does not look like the gateway's dependencies:\n%s", out)
	}
}

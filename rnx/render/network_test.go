package render

import (
	"strings"
	"testing"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

var networks = []*jobletv1.Network{
	{Name: "none", Builtin: true},
	{Name: "bridge", Cidr: "172.20.0.0/16", Bridge: "joblet0", Jobs: 3, Builtin: true},
	{Name: "isolated", Cidr: "172.21.0.0/16", Bridge: "joblet-isolated", Builtin: true},
	{Name: "analytics", Cidr: "192.168.100.0/24", Bridge: "joblet-analytics"},
	{Name: "backend", Cidr: "10.1.0.0/24", Bridge: "joblet-backend", Jobs: 12},
}

func TestNetworkTable(t *testing.T) {
	got := render(t, func(b *strings.Builder) error { return NetworkTable(b, networks) })
	want := "" +
		"NAME       CIDR              BRIDGE            JOBS\n" +
		"---------  ----------------  ----------------  ------------\n" +
		"none       N/A               N/A               0 (built-in)\n" +
		"bridge     172.20.0.0/16     joblet0           3 (built-in)\n" +
		"isolated   172.21.0.0/16     joblet-isolated   0 (built-in)\n" +
		"analytics  192.168.100.0/24  joblet-analytics  0\n" +
		"backend    10.1.0.0/24       joblet-backend    12\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	evil := []*jobletv1.Network{{Name: "x\x1b[2J", Cidr: "10.0.0.0/8", Bridge: "br\tx"}}
	got = render(t, func(b *strings.Builder) error { return NetworkTable(b, evil) })
	want = "" +
		"NAME    CIDR        BRIDGE  JOBS\n" +
		"------  ----------  ------  ----\n" +
		"x^[[2J  10.0.0.0/8  br^Ix   0\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := render(t, func(b *strings.Builder) error { return NetworkTable(b, nil) }); got != "No networks found\n" {
		t.Errorf("empty table = %q", got)
	}
}

func TestNetworksJSON(t *testing.T) {
	got := render(t, func(b *strings.Builder) error { return NetworksJSON(b, networks[:2]) })
	want := `[
  {
    "name": "none",
    "cidr": "",
    "bridge": "",
    "jobs": 0,
    "builtin": true
  },
  {
    "name": "bridge",
    "cidr": "172.20.0.0/16",
    "bridge": "joblet0",
    "jobs": 3,
    "builtin": true
  }
]
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := render(t, func(b *strings.Builder) error { return NetworksJSON(b, nil) }); got != "[]\n" {
		t.Errorf("empty list = %q", got)
	}
}

func TestNetworkCreated(t *testing.T) {
	got := render(t, func(b *strings.Builder) error { return NetworkCreated(b, networks[4]) })
	if want := "Network backend created (10.1.0.0/24, bridge joblet-backend)\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestStatusShowsNetworkAndAddress(t *testing.T) {
	j := &jobletv1.Job{Id: "9", Command: "api", State: jobletv1.JobState_JOB_STATE_RUNNING,
		Network: "backend", IpAddress: "10.1.0.2", Hostname: "api"}
	got := render(t, func(b *strings.Builder) error { return Status(b, j, t0) })
	want := "Job ID: 9\nCommand: api\nStatus: RUNNING\nNetwork: backend\nIP Address: 10.1.0.2\nHostname: api\n"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	got = render(t, func(b *strings.Builder) error { return StatusJSON(b, j) })
	if !strings.Contains(got, `"network": "backend",`+"\n"+`  "ip_address": "10.1.0.2",`) {
		t.Errorf("JSON lacks the network and address:\n%s", got)
	}
}

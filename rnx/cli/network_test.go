package cli

import (
	"strings"
	"testing"
)

func TestNetworkCreateListRemove(t *testing.T) {
	s := newSuite(t)
	for _, tc := range []struct {
		args   []string
		stdout string
	}{
		{[]string{"network", "create", "backend", "--cidr=10.1.0.0/24"}, "Network backend created (10.1.0.0/24, bridge joblet-backend)\n"},
		{[]string{"network", "create", "--cidr", "192.168.100.0/24", "analytics"}, "Network analytics created (192.168.100.0/24, bridge joblet-analytics)\n"},
	} {
		if r := s.rnx(t, tc.args...); r.code != 0 || r.stdout != tc.stdout || r.stderr != "" {
			t.Fatalf("rnx %q: got %+v, want stdout %q", tc.args, r, tc.stdout)
		}
	}
	s.nets.setJobs("bridge", 3)
	s.nets.setJobs("backend", 1)

	want := "" +
		"NAME       CIDR              BRIDGE            JOBS\n" +
		"---------  ----------------  ----------------  ------------\n" +
		"none       N/A               N/A               0 (built-in)\n" +
		"bridge     172.20.0.0/16     joblet0           3 (built-in)\n" +
		"isolated   172.21.0.0/16     joblet-isolated   0 (built-in)\n" +
		"analytics  192.168.100.0/24  joblet-analytics  0\n" +
		"backend    10.1.0.0/24       joblet-backend    1\n"
	if r := s.rnx(t, "network", "list"); r.code != 0 || r.stdout != want {
		t.Fatalf("list: got %+v\nwant\n%s", r, want)
	}
	// A viewer may list.
	if r := s.rnx(t, "--node", "viewer", "network", "list"); r.code != 0 || r.stdout != want {
		t.Fatalf("viewer list: got %+v", r)
	}

	r := s.rnx(t, "network", "list", "--json")
	for _, want := range []string{
		"[\n  {\n    \"name\": \"none\",\n    \"cidr\": \"\",\n    \"bridge\": \"\",\n    \"jobs\": 0,\n    \"builtin\": true\n  },",
		"{\n    \"name\": \"backend\",\n    \"cidr\": \"10.1.0.0/24\",\n    \"bridge\": \"joblet-backend\",\n    \"jobs\": 1,\n    \"builtin\": false\n  }\n]\n",
	} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("list --json lacks %q:\n%s", want, r.stdout)
		}
	}

	if r := s.rnx(t, "network", "remove", "analytics"); r.code != 0 || r.stdout != "Network analytics removed\n" || r.stderr != "" {
		t.Fatalf("remove: got %+v", r)
	}
	if r := s.rnx(t, "network", "list"); strings.Contains(r.stdout, "analytics") {
		t.Fatalf("removed network still listed:\n%s", r.stdout)
	}
}

func TestNetworkErrors(t *testing.T) {
	s := newSuite(t)
	if r := s.rnx(t, "network", "create", "backend", "--cidr=10.1.0.0/24"); r.code != 0 {
		t.Fatalf("create: %+v", r)
	}
	s.nets.setJobs("backend", 2)
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		// The server's refusals, passed on as it worded them.
		{[]string{"network", "create", "backend", "--cidr=10.9.0.0/24"}, 1, "rnx: network \"backend\" exists already\n"},
		{[]string{"network", "create", "web", "--cidr=10.1.0.128/25"}, 1, "rnx: CIDR 10.1.0.128/25 overlaps network \"backend\" (10.1.0.0/24)\n"},
		{[]string{"network", "create", "web", "--cidr=nope"}, 1, "rnx: CIDR \"nope\": not an address range like 10.1.0.0/24\n"},
		{[]string{"network", "remove", "backend"}, 1, "rnx: network \"backend\" is used by 2 job(s)\n"},
		{[]string{"network", "remove", "bridge"}, 1, "rnx: network \"bridge\" is built in and cannot be removed\n"},
		{[]string{"network", "remove", "ghost"}, 1, "rnx: network \"ghost\" does not exist\n"},
		{[]string{"--node", "viewer", "network", "create", "web", "--cidr=10.2.0.0/24"}, 1, "rnx: permission denied: role viewer may not call CreateNetwork\n"},
		{[]string{"--node", "viewer", "network", "remove", "backend"}, 1, "rnx: permission denied: role viewer may not call RemoveNetwork\n"},
		// Usage errors, caught before any call.
		{[]string{"network", "create", "web"}, 2, "rnx: network create: --cidr is required, e.g. --cidr=10.1.0.0/24\n"},
		{[]string{"network", "create", "--cidr=10.2.0.0/24"}, 2, "rnx: create: want one NAME (usage: rnx network create NAME --cidr=CIDR [flags])\n"},
		{[]string{"network", "remove"}, 2, "rnx: remove: want one NAME (usage: rnx network remove NAME [flags])\n"},
		{[]string{"network", "list", "extra"}, 2, "rnx: list: want no arguments (usage: rnx network list [flags])\n"},
		{[]string{"network", "frob"}, 2, "rnx: network: want a subcommand: create, list or remove (usage: rnx network [flags])\n"},
	} {
		r := s.rnx(t, tc.args...)
		if r.code != tc.code || r.stderr != tc.stderr || r.stdout != "" {
			t.Errorf("rnx %q: got code %d stdout %q stderr %q\nwant code %d stderr %q", tc.args, r.code, r.stdout, r.stderr, tc.code, tc.stderr)
		}
	}
	if r := s.rnx(t, "network", "list"); !strings.Contains(r.stdout, "\nbackend ") || strings.Contains(r.stdout, "web") {
		t.Fatalf("refused calls changed the networks:\n%s", r.stdout)
	}
}

func TestRunAndStatusShowNetwork(t *testing.T) {
	s := newSuite(t)
	r := s.rnx(t, "run", "-d", "--network=backend", "--name=api", "sleep", "30")
	want := "ID: 1\nName: api\nCommand: sleep 30\nStatus: RUNNING\nStartTime: 2025-07-11T06:18:54Z\nNetwork: backend\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("run: got %+v\nwant %q", r, want)
	}
	if spec := s.fake.specs[0]; spec.GetNetwork() != "backend" {
		t.Fatalf("server got network %q", spec.GetNetwork())
	}
	r = s.rnx(t, "status", "1")
	if r.code != 0 || !strings.Contains(r.stdout, "\nNetwork: backend\nIP Address: 10.1.0.2\n") {
		t.Fatalf("status: got %+v", r)
	}
	// Without a network the lines are left out.
	s.rnx(t, "run", "-d", "sleep", "30")
	if r := s.rnx(t, "status", "2"); strings.Contains(r.stdout, "Network:") || strings.Contains(r.stdout, "IP Address:") {
		t.Fatalf("status of a job without a network:\n%s", r.stdout)
	}
}

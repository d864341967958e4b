package jobs

import "testing"

func TestUserNSReachesTheRunner(t *testing.T) {
	runner := &specRunner{}
	u := &UserNS{HostUID: 1879048192, HostGID: 1879048193, Size: 65536}
	f := newFixture(t, func(o *Options) { o.Runner, o.UserNS = runner, u })
	f.wait(f.run("true").GetId())
	if s := runner.last(); s.UserNS == nil || *s.UserNS != *u {
		t.Errorf("runner got user namespace %+v, want %+v", s.UserNS, u)
	}

	runner = &specRunner{}
	f = newFixture(t, func(o *Options) { o.Runner = runner })
	f.wait(f.run("true").GetId())
	if s := runner.last(); s.UserNS != nil {
		t.Errorf("without one configured, the runner got user namespace %+v", s.UserNS)
	}
}

package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// fakeIPT is an in-memory iptables: each chain is its rule specs in order.
type fakeIPT struct {
	chains map[string][]string // "table chain" -> rules
	calls  []string            // mutating calls, for asserting what changed
}

func newFake() *fakeIPT {
	f := &fakeIPT{chains: map[string][]string{}}
	for _, c := range []string{"filter INPUT", "filter FORWARD", "filter OUTPUT", "nat PREROUTING", "nat POSTROUTING", "nat OUTPUT"} {
		f.chains[c] = nil
	}
	return f
}

func (f *fakeIPT) ChainExists(table, chain string) (bool, error) {
	_, ok := f.chains[table+" "+chain]
	return ok, nil
}

func (f *fakeIPT) ClearChain(table, chain string) error {
	f.calls = append(f.calls, "clear "+table+" "+chain)
	f.chains[table+" "+chain] = []string{}
	return nil
}

func (f *fakeIPT) List(table, chain string) ([]string, error) {
	rs, ok := f.chains[table+" "+chain]
	if !ok {
		return nil, errors.New("no chain")
	}
	out := []string{"-N " + chain}
	for _, r := range rs {
		out = append(out, "-A "+chain+" "+r)
	}
	return out, nil
}

func (f *fakeIPT) Exists(table, chain string, spec ...string) (bool, error) {
	rs, ok := f.chains[table+" "+chain]
	if !ok {
		return false, fmt.Errorf("no chain %s %s", table, chain)
	}
	return slices.Contains(rs, strings.Join(spec, " ")), nil
}

func (f *fakeIPT) Insert(table, chain string, pos int, spec ...string) error {
	k := table + " " + chain
	rs, ok := f.chains[k]
	if !ok {
		return fmt.Errorf("no chain %s", k)
	}
	f.calls = append(f.calls, "insert "+k)
	f.chains[k] = slices.Insert(rs, pos-1, strings.Join(spec, " "))
	return nil
}

func (f *fakeIPT) Append(table, chain string, spec ...string) error {
	k := table + " " + chain
	if _, ok := f.chains[k]; !ok {
		return fmt.Errorf("no chain %s", k)
	}
	f.calls = append(f.calls, "append "+k)
	f.chains[k] = append(f.chains[k], strings.Join(spec, " "))
	return nil
}

func (f *fakeIPT) Delete(table, chain string, spec ...string) error {
	k := table + " " + chain
	i := slices.Index(f.chains[k], strings.Join(spec, " "))
	if i < 0 {
		return errors.New("no such rule")
	}
	f.calls = append(f.calls, "delete "+k)
	f.chains[k] = slices.Delete(f.chains[k], i, i+1)
	return nil
}

func (f *fakeIPT) DeleteChain(table, chain string) error {
	k := table + " " + chain
	if rs, ok := f.chains[k]; !ok || len(rs) != 0 {
		return fmt.Errorf("chain %s missing or not empty", k)
	}
	f.calls = append(f.calls, "delete-chain "+k)
	delete(f.chains, k)
	return nil
}

// dump renders every chain like `iptables -S`, in a fixed order.
func (f *fakeIPT) dump() string {
	var b strings.Builder
	for _, k := range []string{"filter INPUT", "filter FORWARD", "filter JOBLET-IN", "filter JOBLET-FWD", "nat POSTROUTING", "nat JOBLET-NAT"} {
		for _, r := range f.chains[k] {
			fmt.Fprintf(&b, "%s -A %s %s\n", strings.Fields(k)[0], strings.Fields(k)[1], r)
		}
	}
	return b.String()
}

var (
	bridgeNet = Net{Name: "bridge", Bridge: "joblet0", CIDR: netip.MustParsePrefix("172.20.0.0/16")}
	isoNet    = Net{Name: "isolated", Bridge: "joblet-isolated", CIDR: netip.MustParsePrefix("172.21.0.0/16"), Isolated: true}
	customNet = Net{Name: "backend", Bridge: "joblet-backend", CIDR: netip.MustParsePrefix("10.5.0.0/24")}
)

const golden = `filter -A INPUT -j JOBLET-IN
filter -A FORWARD -j JOBLET-FWD
filter -A JOBLET-IN -i joblet0 -d 172.20.0.1/32 -p udp -m udp --dport 53 -j ACCEPT -m comment --comment joblet:bridge
filter -A JOBLET-IN -i joblet0 -d 172.20.0.1/32 -p tcp -m tcp --dport 53 -j ACCEPT -m comment --comment joblet:bridge
filter -A JOBLET-IN -i joblet0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT -m comment --comment joblet:bridge
filter -A JOBLET-IN -i joblet0 -j DROP -m comment --comment joblet:bridge
filter -A JOBLET-IN -i joblet-isolated -d 172.21.0.1/32 -p udp -m udp --dport 53 -j ACCEPT -m comment --comment joblet:isolated
filter -A JOBLET-IN -i joblet-isolated -d 172.21.0.1/32 -p tcp -m tcp --dport 53 -j ACCEPT -m comment --comment joblet:isolated
filter -A JOBLET-IN -i joblet-isolated -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT -m comment --comment joblet:isolated
filter -A JOBLET-IN -i joblet-isolated -j DROP -m comment --comment joblet:isolated
filter -A JOBLET-FWD -i joblet0 -o joblet0 -j ACCEPT -m comment --comment joblet:bridge
filter -A JOBLET-FWD -i joblet0 -o joblet+ -j DROP -m comment --comment joblet:bridge
filter -A JOBLET-FWD -i joblet0 -j ACCEPT -m comment --comment joblet:bridge
filter -A JOBLET-FWD -o joblet0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT -m comment --comment joblet:bridge
filter -A JOBLET-FWD -o joblet0 -j DROP -m comment --comment joblet:bridge
filter -A JOBLET-FWD -i joblet-isolated -o joblet-isolated -j DROP -m comment --comment joblet:isolated
filter -A JOBLET-FWD -i joblet-isolated -o joblet+ -j DROP -m comment --comment joblet:isolated
filter -A JOBLET-FWD -i joblet-isolated -j ACCEPT -m comment --comment joblet:isolated
filter -A JOBLET-FWD -o joblet-isolated -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT -m comment --comment joblet:isolated
filter -A JOBLET-FWD -o joblet-isolated -j DROP -m comment --comment joblet:isolated
nat -A POSTROUTING -j JOBLET-NAT
nat -A JOBLET-NAT -s 172.20.0.0/16 ! -o joblet0 -j MASQUERADE -m comment --comment joblet:bridge
nat -A JOBLET-NAT -s 172.21.0.0/16 ! -o joblet-isolated -j MASQUERADE -m comment --comment joblet:isolated
`

func TestSyncGolden(t *testing.T) {
	ipt := newFake()
	ipt.chains["filter INPUT"] = []string{"-p tcp --dport 22 -j ACCEPT"} // the host's own rule stays, after our jump
	fw := &Firewall{ipt: ipt}
	if err := fw.Sync([]Net{bridgeNet, isoNet}); err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(golden, "filter -A INPUT -j JOBLET-IN\n", "filter -A INPUT -j JOBLET-IN\nfilter -A INPUT -p tcp --dport 22 -j ACCEPT\n", 1)
	if got := ipt.dump(); got != want {
		t.Fatalf("rules:\n%s\nwant:\n%s", got, want)
	}

	// A second sync over the same networks changes nothing.
	ipt.calls = nil
	if err := fw.Sync([]Net{bridgeNet, isoNet}); err != nil {
		t.Fatal(err)
	}
	if len(ipt.calls) != 0 {
		t.Fatalf("idempotent sync changed rules: %v", ipt.calls)
	}
}

func TestAddRemove(t *testing.T) {
	ipt := newFake()
	fw := &Firewall{ipt: ipt}
	if err := fw.Sync([]Net{bridgeNet, isoNet}); err != nil {
		t.Fatal(err)
	}
	if err := fw.Add(customNet); err != nil {
		t.Fatal(err)
	}
	dump := ipt.dump()
	for _, want := range []string{
		"nat -A JOBLET-NAT -s 10.5.0.0/24 ! -o joblet-backend -j MASQUERADE -m comment --comment joblet:backend\n",
		"filter -A JOBLET-FWD -i joblet-backend -o joblet-backend -j ACCEPT -m comment --comment joblet:backend\n",
		"filter -A JOBLET-FWD -i joblet-backend -o joblet+ -j DROP -m comment --comment joblet:backend\n",
		"filter -A JOBLET-IN -i joblet-backend -d 10.5.0.1/32 -p udp -m udp --dport 53 -j ACCEPT -m comment --comment joblet:backend\n",
		"filter -A JOBLET-IN -i joblet-backend -j DROP -m comment --comment joblet:backend\n",
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("missing %q", want)
		}
	}
	if n := strings.Count(dump, "joblet:backend"); n != 10 {
		t.Errorf("%d rules for backend, want 10", n)
	}
	if err := fw.Remove(customNet); err != nil {
		t.Fatal(err)
	}
	if got := ipt.dump(); got != golden {
		t.Fatalf("after remove:\n%s\nwant:\n%s", got, golden)
	}
	if err := fw.Remove(customNet); err != nil {
		t.Fatalf("second remove: %v", err)
	}
}

func TestSyncRepairsAndDropsStale(t *testing.T) {
	ipt := newFake()
	fw := &Firewall{ipt: ipt}
	if err := fw.Sync([]Net{bridgeNet, isoNet, customNet}); err != nil {
		t.Fatal(err)
	}
	// netd forgot "backend" (removed while its rules could not be) and
	// someone deleted a rule of "bridge" and the FORWARD jump by hand.
	if err := ipt.Delete("filter", ChainFwd, rules(bridgeNet)[2].spec...); err != nil {
		t.Fatal(err)
	}
	if err := ipt.Delete("filter", "FORWARD", "-j", ChainFwd); err != nil {
		t.Fatal(err)
	}
	if err := fw.Sync([]Net{bridgeNet, isoNet}); err != nil {
		t.Fatal(err)
	}
	if got := ipt.dump(); got != golden {
		t.Fatalf("after repair:\n%s\nwant:\n%s", got, golden)
	}
}

// Purge leaves the host's chains as they were before netd, and is
// idempotent.
func TestPurge(t *testing.T) {
	ipt := newFake()
	ipt.chains["filter INPUT"] = []string{"-p tcp --dport 22 -j ACCEPT"}
	fw := &Firewall{ipt: ipt}
	if err := fw.Sync([]Net{bridgeNet, isoNet}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := fw.Purge(); err != nil {
			t.Fatal(err)
		}
		if got, want := ipt.dump(), "filter -A INPUT -p tcp --dport 22 -j ACCEPT\n"; got != want {
			t.Fatalf("rules after purge:\n%s\nwant:\n%s", got, want)
		}
		for _, c := range []string{"filter JOBLET-IN", "filter JOBLET-FWD", "nat JOBLET-NAT"} {
			if _, ok := ipt.chains[c]; ok {
				t.Fatalf("chain %s left", c)
			}
		}
	}
}

// countingIPT counts the read calls made to an iptables, to show what the
// periodic check costs.
type countingIPT struct {
	*fakeIPT
	reads int
}

func (c *countingIPT) List(table, chain string) ([]string, error) {
	c.reads++
	return c.fakeIPT.List(table, chain)
}

func (c *countingIPT) Exists(table, chain string, spec ...string) (bool, error) {
	c.reads++
	return c.fakeIPT.Exists(table, chain, spec...)
}

// Intact notices every way the rules can be lost or changed behind netd's
// back, and in the steady state costs one listing per chain and one check
// per jump, however many networks there are.
func TestIntact(t *testing.T) {
	nets := []Net{bridgeNet, isoNet, customNet}
	for _, tc := range []struct {
		name   string
		mangle func(*fakeIPT)
	}{
		{"flush filter", func(f *fakeIPT) {
			for _, c := range []string{"INPUT", "FORWARD", ChainIn, ChainFwd} {
				f.chains["filter "+c] = nil
			}
		}},
		{"flush nat", func(f *fakeIPT) { f.chains["nat POSTROUTING"], f.chains["nat "+ChainNAT] = nil, nil }},
		{"chain deleted", func(f *fakeIPT) { delete(f.chains, "nat "+ChainNAT) }},
		{"jump deleted", func(f *fakeIPT) { f.Delete("filter", "INPUT", "-j", ChainIn) }},
		{"rule deleted", func(f *fakeIPT) { f.Delete("filter", ChainFwd, rules(customNet)[1].spec...) }},
		{"rule replaced", func(f *fakeIPT) { f.chains["filter "+ChainIn][0] = "-i joblet0 -j ACCEPT" }},
		{"rule added", func(f *fakeIPT) { f.Append("filter", ChainFwd, "-j", "ACCEPT") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ipt := &countingIPT{fakeIPT: newFake()}
			fw := &Firewall{ipt: ipt}
			if err := fw.Sync(nets); err != nil {
				t.Fatal(err)
			}
			if !fw.Intact(nets) {
				t.Fatal("rules just synced are not intact")
			}
			ipt.reads = 0
			if !fw.Intact(nets) {
				t.Fatal("second check: not intact")
			}
			if ipt.reads != len(chains)+len(jumps) {
				t.Errorf("steady-state check made %d iptables calls, want %d", ipt.reads, len(chains)+len(jumps))
			}
			tc.mangle(ipt.fakeIPT)
			if fw.Intact(nets) {
				t.Fatalf("rules intact after %s:\n%s", tc.name, ipt.dump())
			}
			if err := fw.Sync(nets); err != nil {
				t.Fatal(err)
			}
			if !fw.Intact(nets) {
				t.Fatalf("not intact after the repair:\n%s", ipt.dump())
			}
		})
	}
	// A network added or removed through the Firewall is no change behind
	// its back.
	ipt := newFake()
	fw := &Firewall{ipt: ipt}
	if err := fw.Sync(nets[:2]); err != nil || !fw.Intact(nets[:2]) {
		t.Fatalf("sync: %v", err)
	}
	if err := fw.Add(customNet); err != nil || !fw.Intact(nets) {
		t.Fatalf("after Add: %v", err)
	}
	if err := fw.Remove(customNet); err != nil || !fw.Intact(nets[:2]) {
		t.Fatalf("after Remove: %v", err)
	}
}

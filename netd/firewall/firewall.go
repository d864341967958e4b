// Package firewall keeps netd's iptables rules: three chains of its own,
// jumped to from the built-in chains, holding one block of rules per network.
//
//	filter INPUT       -> JOBLET-IN   jobs reach the host only for DNS to netd
//	filter FORWARD     -> JOBLET-FWD  a network reaches itself and the outside,
//	                                  never another network; isolated jobs
//	                                  reach nothing but the outside
//	nat    POSTROUTING -> JOBLET-NAT  one MASQUERADE per network
//
// Every rule carries the comment "joblet:<network>", so `iptables -S` shows
// who owns it. There are no per-job rules.
package firewall

import (
	"fmt"
	"net/netip"
	"slices"

	goiptables "github.com/coreos/go-iptables/iptables"
)

// The chains netd owns.
const (
	ChainIn  = "JOBLET-IN"
	ChainFwd = "JOBLET-FWD"
	ChainNAT = "JOBLET-NAT"
)

// BridgeWildcard matches every bridge netd makes (iptables' "+" suffix).
const BridgeWildcard = "joblet+"

// Net is what the rules of one network depend on.
type Net struct {
	Name     string
	Bridge   string
	CIDR     netip.Prefix
	Isolated bool // jobs on the bridge must not reach each other
}

// iptables is the part of go-iptables the firewall uses, so tests can give
// it an in-memory fake.
type iptables interface {
	ChainExists(table, chain string) (bool, error)
	ClearChain(table, chain string) error
	List(table, chain string) ([]string, error)
	Exists(table, chain string, rulespec ...string) (bool, error)
	Insert(table, chain string, pos int, rulespec ...string) error
	Append(table, chain string, rulespec ...string) error
	Delete(table, chain string, rulespec ...string) error
	DeleteChain(table, chain string) error
}

// Firewall programs the rules. It is not safe for concurrent use: its
// owner serialises calls.
type Firewall struct {
	ipt iptables
	// seen is each chain of netd's as listed once it was known to hold
	// exactly its rules ("table chain" -> iptables -S lines), so that
	// Intact compares a listing instead of checking rule by rule. Every
	// change made here forgets it.
	seen map[string][]string
}

// New returns a Firewall on the kernel's iptables (IPv4).
func New() (*Firewall, error) {
	ipt, err := goiptables.New()
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	return &Firewall{ipt: ipt}, nil
}

// Intact reports whether netd's chains still hold exactly the rules of nets
// and the built-in chains still jump to them: the cheap check run
// periodically to notice rules someone else flushed or changed. In the
// steady state it costs one listing per chain and one check per jump. An
// error of iptables counts as not intact; Sync then reports it.
func (f *Firewall) Intact(nets []Net) bool {
	want := wanted(nets)
	for _, c := range chains {
		key := c.table + " " + c.chain
		have, err := f.ipt.List(c.table, c.chain)
		if err != nil {
			return false
		}
		if seen, ok := f.seen[key]; ok {
			if !slices.Equal(have, seen) {
				return false
			}
			continue
		}
		if ok, err := f.holds(c.table, c.chain, want[key]); err != nil || !ok {
			return false
		}
		if f.seen == nil {
			f.seen = map[string][]string{}
		}
		f.seen[key] = have
	}
	for _, j := range jumps {
		if ok, err := f.ipt.Exists(j.table, j.chain, j.spec...); err != nil || !ok {
			return false
		}
	}
	return true
}

type rule struct {
	table, chain string
	spec         []string
}

// jumps are where the built-in chains hand over to netd's chains. They are
// inserted first so that a host policy further down cannot shadow them.
var jumps = []rule{
	{"filter", "INPUT", []string{"-j", ChainIn}},
	{"filter", "FORWARD", []string{"-j", ChainFwd}},
	{"nat", "POSTROUTING", []string{"-j", ChainNAT}},
}

var chains = []rule{{table: "filter", chain: ChainIn}, {table: "filter", chain: ChainFwd}, {table: "nat", chain: ChainNAT}}

// rules is the block of rules of one network, in order.
func rules(n Net) []rule {
	br, cidr := n.Bridge, n.CIDR.String()
	gw := n.CIDR.Addr().Next().String() + "/32"
	tag := []string{"-m", "comment", "--comment", "joblet:" + n.Name}
	r := func(table, chain string, spec ...string) rule {
		return rule{table, chain, append(spec, tag...)}
	}
	within := "ACCEPT"
	if n.Isolated {
		within = "DROP"
	}
	return []rule{
		r("nat", ChainNAT, "-s", cidr, "!", "-o", br, "-j", "MASQUERADE"),

		r("filter", ChainFwd, "-i", br, "-o", br, "-j", within),
		r("filter", ChainFwd, "-i", br, "-o", BridgeWildcard, "-j", "DROP"),
		r("filter", ChainFwd, "-i", br, "-j", "ACCEPT"),
		r("filter", ChainFwd, "-o", br, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
		r("filter", ChainFwd, "-o", br, "-j", "DROP"),

		r("filter", ChainIn, "-i", br, "-d", gw, "-p", "udp", "-m", "udp", "--dport", "53", "-j", "ACCEPT"),
		r("filter", ChainIn, "-i", br, "-d", gw, "-p", "tcp", "-m", "tcp", "--dport", "53", "-j", "ACCEPT"),
		r("filter", ChainIn, "-i", br, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
		r("filter", ChainIn, "-i", br, "-j", "DROP"),
	}
}

// Sync makes netd's chains hold exactly the rules of nets, as at start. A
// chain that already does is left alone, so the rules of running jobs never
// blink; one that does not is rebuilt.
func (f *Firewall) Sync(nets []Net) error {
	f.seen = nil
	want := wanted(nets)
	for _, c := range chains {
		key := c.table + " " + c.chain
		ok, err := f.holds(c.table, c.chain, want[key])
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		if err := f.ipt.ClearChain(c.table, c.chain); err != nil {
			return fmt.Errorf("clear %s %s: %w", c.table, c.chain, err)
		}
		for _, r := range want[key] {
			if err := f.ipt.Append(r.table, r.chain, r.spec...); err != nil {
				return fmt.Errorf("append to %s %s: %w", r.table, r.chain, err)
			}
		}
	}
	for _, j := range jumps {
		ok, err := f.ipt.Exists(j.table, j.chain, j.spec...)
		if err != nil {
			return fmt.Errorf("check jump from %s %s: %w", j.table, j.chain, err)
		}
		if !ok {
			if err := f.ipt.Insert(j.table, j.chain, 1, j.spec...); err != nil {
				return fmt.Errorf("jump from %s %s: %w", j.table, j.chain, err)
			}
		}
	}
	return nil
}

// wanted is the rules of nets by "table chain".
func wanted(nets []Net) map[string][]rule {
	want := map[string][]rule{}
	for _, n := range nets {
		for _, r := range rules(n) {
			want[r.table+" "+r.chain] = append(want[r.table+" "+r.chain], r)
		}
	}
	return want
}

// holds reports whether chain exists with exactly the rules want.
func (f *Firewall) holds(table, chain string, want []rule) (bool, error) {
	exists, err := f.ipt.ChainExists(table, chain)
	if err != nil || !exists {
		return false, err
	}
	have, err := f.ipt.List(table, chain)
	if err != nil {
		return false, fmt.Errorf("list %s %s: %w", table, chain, err)
	}
	if len(have) != len(want)+1 { // List starts with the "-N chain" line
		return false, nil
	}
	for _, r := range want {
		ok, err := f.ipt.Exists(r.table, r.chain, r.spec...)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// Add appends the rules of a new network.
func (f *Firewall) Add(n Net) error {
	f.seen = nil
	for _, r := range rules(n) {
		if err := f.ipt.Append(r.table, r.chain, r.spec...); err != nil {
			return fmt.Errorf("append to %s %s: %w", r.table, r.chain, err)
		}
	}
	return nil
}

// Remove deletes the rules of a network; rules already gone are skipped.
func (f *Firewall) Remove(n Net) error {
	f.seen = nil
	for _, r := range rules(n) {
		ok, err := f.ipt.Exists(r.table, r.chain, r.spec...)
		if err != nil {
			return fmt.Errorf("check rule in %s %s: %w", r.table, r.chain, err)
		}
		if !ok {
			continue
		}
		if err := f.ipt.Delete(r.table, r.chain, r.spec...); err != nil {
			return fmt.Errorf("delete from %s %s: %w", r.table, r.chain, err)
		}
	}
	return nil
}

// Purge removes the jumps to netd's chains and the chains themselves, for
// a netd that leaves nothing behind when it stops (dev mode). What is gone
// already is skipped.
func (f *Firewall) Purge() error {
	f.seen = nil
	for _, j := range jumps {
		ok, err := f.ipt.Exists(j.table, j.chain, j.spec...)
		if err != nil {
			return fmt.Errorf("check jump from %s %s: %w", j.table, j.chain, err)
		}
		if ok {
			if err := f.ipt.Delete(j.table, j.chain, j.spec...); err != nil {
				return fmt.Errorf("delete jump from %s %s: %w", j.table, j.chain, err)
			}
		}
	}
	for _, c := range chains {
		exists, err := f.ipt.ChainExists(c.table, c.chain)
		if err != nil {
			return fmt.Errorf("check %s %s: %w", c.table, c.chain, err)
		}
		if !exists {
			continue
		}
		if err := f.ipt.ClearChain(c.table, c.chain); err != nil {
			return fmt.Errorf("clear %s %s: %w", c.table, c.chain, err)
		}
		if err := f.ipt.DeleteChain(c.table, c.chain); err != nil {
			return fmt.Errorf("delete %s %s: %w", c.table, c.chain, err)
		}
	}
	return nil
}

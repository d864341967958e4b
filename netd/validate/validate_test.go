package validate

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/joblet-dev/joblet/proto/errdefs"
)

func TestNetworkName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a", true}, {"backend", true}, {"team-1", true}, {strings.Repeat("a", 32), true},
		{"", false}, {strings.Repeat("a", 33), false}, {"1abc", false}, {"-abc", false}, {"abc-", false},
		{"Abc", false}, {"a b", false}, {"a/b", false}, {"a.b", false}, {"a_b", false}, {"ä", false},
		{"none", false}, {"isolated", false}, {"bridge", false}, {"host", false}, {"default", false},
	} {
		err := NetworkName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("NetworkName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("NetworkName(%q): kind of %v is not invalid argument", tc.name, err)
		}
	}
	if err := NetworkName("host"); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("reserved name error %v does not say reserved", err)
	}
}

func TestJobIDAndName(t *testing.T) {
	for _, id := range []string{"1", "42", "a-b_c.d"} {
		if err := JobID(id); err != nil {
			t.Errorf("JobID(%q): %v", id, err)
		}
	}
	for _, id := range []string{"", ".", "..", "../x", "a/b", strings.Repeat("1", 65), "a\x00"} {
		if err := JobID(id); err == nil {
			t.Errorf("JobID(%q) accepted", id)
		}
	}
	for _, n := range []string{"", "api", "db-1", "9"} {
		if err := JobName(n); err != nil {
			t.Errorf("JobName(%q): %v", n, err)
		}
	}
	for _, n := range []string{"API", "-a", "a-", "a.b", "job-7", strings.Repeat("a", 64)} {
		if err := JobName(n); err == nil {
			t.Errorf("JobName(%q) accepted", n)
		}
	}
}

func TestCIDR(t *testing.T) {
	taken := []Taken{
		{netip.MustParsePrefix("172.20.0.0/16"), `network "bridge"`},
		{netip.MustParsePrefix("192.168.1.0/24"), "host route on eth0"},
		{netip.MustParsePrefix("10.9.8.7/32"), "host address on eth1"},
	}
	for _, tc := range []struct {
		in, want, errHas string
	}{
		{in: "10.1.0.0/24", want: "10.1.0.0/24"},
		{in: "10.0.0.0/8", errHas: "overlaps host address on eth1"},
		{in: "11.0.0.0/8", want: "11.0.0.0/8"},
		{in: "192.168.2.0/29", want: "192.168.2.0/29"},
		{in: "10.1.0.5/24", errHas: "did you mean 10.1.0.0/24?"},
		{in: "10.1.0.0/30", errHas: "size must be /8 to /29"},
		{in: "10.0.0.0/7", errHas: "size must be"},
		{in: "fd00::/64", errHas: "only IPv4"},
		{in: "::ffff:10.0.0.0/120", errHas: "only IPv4"},
		{in: "10.1.0.0", errHas: "not an address range"},
		{in: "10.1.0.0/24 ", errHas: "not an address range"},
		{in: "010.1.0.0/24", errHas: "not an address range"},
		{in: "", errHas: "not an address range"},
		{in: "172.20.5.0/24", errHas: `overlaps network "bridge" (172.20.0.0/16)`},
		{in: "172.0.0.0/8", errHas: `overlaps network "bridge"`},
		{in: "192.168.0.0/16", errHas: "overlaps host route on eth0"},
		{in: "127.0.0.0/8", errHas: "loopback"},
		{in: "169.254.0.0/16", errHas: "link-local"},
		{in: "224.0.0.0/24", errHas: "multicast"},
	} {
		p, err := CIDR(tc.in, taken)
		if tc.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errHas) || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("CIDR(%q) = %v, %v; want invalid argument containing %q", tc.in, p, err, tc.errHas)
			}
			continue
		}
		if err != nil || p.String() != tc.want {
			t.Errorf("CIDR(%q) = %v, %v; want %s", tc.in, p, err, tc.want)
		}
	}
}

func FuzzValidate(f *testing.F) {
	for _, s := range []string{"10.1.0.0/24", "10.1.0.5/24", "backend", "none", "a-", "172.20.0.0/16", "1.2.3.4/33"} {
		f.Add(s)
	}
	taken := []Taken{{netip.MustParsePrefix("172.20.0.0/16"), "bridge"}}
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := CIDR(s, taken); err == nil {
			if !p.Addr().Is4() || p.Masked() != p || p.Bits() < MinBits || p.Bits() > MaxBits || p.Overlaps(taken[0].Prefix) {
				t.Fatalf("CIDR(%q) accepted %v", s, p)
			}
			if p.String() != s {
				t.Fatalf("CIDR(%q) accepted a non-canonical spelling (%v)", s, p)
			}
		} else if len(err.Error()) > 200 || strings.ContainsAny(err.Error(), "\n\x00") {
			t.Fatalf("CIDR(%q): unsafe message %q", s, err)
		}
		if NetworkName(s) == nil {
			// The bridge is named after the network; interface names are
			// at most 15 bytes and must not contain '/', ':' or spaces.
			if len(s) > 32 || strings.ContainsAny(s, "/: \t\n\x00.") {
				t.Fatalf("NetworkName accepted %q", s)
			}
		}
	})
}

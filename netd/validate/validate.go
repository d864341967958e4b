// Package validate checks the names and address ranges that users give
// netd: network names that are safe inside interface names, job names that
// are DNS labels, and canonical IPv4 CIDRs that overlap nothing in use.
package validate

import (
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/joblet-dev/joblet/proto/errdefs"
)

// Reserved are the names no custom network may take: the built-ins and the
// names other tools give their host or default networks.
var Reserved = []string{"none", "isolated", "bridge", "host", "default"}

// Prefix sizes a custom network may have: a /8 is the largest sane range,
// a /29 the smallest that still leaves room for a few jobs.
const (
	MinBits = 8
	MaxBits = 29
)

var (
	networkName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$`)
	jobID       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	dnsLabel    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// NetworkName checks a custom network's name: 1 to 32 lowercase letters,
// digits and dashes, starting with a letter and not ending with a dash, and
// not reserved.
func NetworkName(name string) error {
	if !networkName.MatchString(name) {
		return errdefs.Errorf(errdefs.ErrInvalidArgument,
			"network name %s: use 1 to 32 lowercase letters, digits and dashes, starting with a letter", quote(name))
	}
	if slices.Contains(Reserved, name) {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "network name %q is reserved", name)
	}
	return nil
}

// JobID checks a job id: one safe path element and interface-name seed.
func JobID(id string) error {
	if !jobID.MatchString(id) {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid job id %s", quote(id))
	}
	return nil
}

// JobName checks a job's DNS name; empty means none.
func JobName(name string) error {
	if name != "" && !dnsLabel.MatchString(name) {
		return errdefs.Errorf(errdefs.ErrInvalidArgument,
			"job name %s: use 1 to 63 lowercase letters, digits and dashes, not starting or ending with a dash", quote(name))
	}
	if strings.HasPrefix(name, "job-") {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "job name %q: the prefix job- is kept for job ids", name)
	}
	return nil
}

// Taken is an address range already in use, and what uses it.
type Taken struct {
	Prefix netip.Prefix
	What   string // e.g. `network "bridge"` or `host route on eth0`
}

// unusable are ranges no job network may use.
var unusable = []Taken{
	{netip.MustParsePrefix("0.0.0.0/8"), "the unspecified range"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("224.0.0.0/3"), "multicast and reserved addresses"},
}

// CIDR parses a network's CIDR and checks that it is canonical IPv4 of a
// sane size that overlaps none of taken.
func CIDR(s string, taken []Taken) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "CIDR %s: not an address range like 10.1.0.0/24", quote(s))
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "CIDR %q: only IPv4 networks are supported", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "CIDR %q is not canonical: did you mean %s?", s, m)
	}
	if p.Bits() < MinBits || p.Bits() > MaxBits {
		return netip.Prefix{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "CIDR %q: size must be /%d to /%d", s, MinBits, MaxBits)
	}
	for _, t := range append(slices.Clip(unusable), taken...) {
		if t.Prefix.Overlaps(p) {
			return netip.Prefix{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "CIDR %s overlaps %s (%s)", p, t.What, t.Prefix)
		}
	}
	return p, nil
}

// quote keeps hostile input from making an error message long or
// unprintable: at most 32 bytes of it, quoted with Go escapes.
func quote(s string) string {
	if len(s) > 32 {
		return strconv.Quote(s[:32]) + "..."
	}
	return strconv.Quote(s)
}

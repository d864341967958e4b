// Package ipam hands out a network's IPv4 addresses one job at a time:
// sequentially from a cursor, so a released address is not reused at once,
// and never the network, gateway or broadcast address.
package ipam

import (
	"net/netip"

	"github.com/joblet-dev/joblet/proto/errdefs"
)

// Pool is the address space of one network. It is not safe for concurrent
// use; its owner serialises calls.
type Pool struct {
	prefix netip.Prefix
	next   netip.Addr // where the next search starts
	owner  map[netip.Addr]string
}

// New returns an empty pool over prefix, which must be a canonical IPv4
// prefix of at most /30.
func New(prefix netip.Prefix) *Pool {
	p := &Pool{prefix: prefix, owner: map[netip.Addr]string{}}
	p.next = p.first()
	return p
}

// Prefix is the pool's range.
func (p *Pool) Prefix() netip.Prefix { return p.prefix }

// Gateway is the network's first usable address, kept for the bridge.
func Gateway(prefix netip.Prefix) netip.Addr { return prefix.Addr().Next() }

// Broadcast is the network's last address.
func Broadcast(prefix netip.Prefix) netip.Addr {
	a := prefix.Addr().As4()
	host := uint32(1)<<(32-prefix.Bits()) - 1
	v := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (p *Pool) first() netip.Addr { return Gateway(p.prefix).Next() }

func (p *Pool) usable(a netip.Addr) bool {
	return p.prefix.Contains(a) && a.Compare(p.first()) >= 0 && a.Compare(Broadcast(p.prefix)) < 0
}

// Allocate leases the next free address to owner. A full pool gives an
// errdefs.ErrResourceExhausted error.
func (p *Pool) Allocate(owner string) (netip.Addr, error) {
	a := p.next
	for range p.Size() {
		if !p.usable(a) {
			a = p.first()
		}
		if _, used := p.owner[a]; !used {
			p.owner[a] = owner
			p.next = a.Next()
			return a, nil
		}
		a = a.Next()
	}
	return netip.Addr{}, errdefs.Errorf(errdefs.ErrResourceExhausted,
		"network %s is full: all %d addresses are in use", p.prefix, p.Size())
}

// Reserve leases a given address to owner, as when restoring saved leases.
func (p *Pool) Reserve(a netip.Addr, owner string) error {
	if !p.usable(a) {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "address %s is not usable in %s", a, p.prefix)
	}
	if o, used := p.owner[a]; used && o != owner {
		return errdefs.Errorf(errdefs.ErrAlreadyExists, "address %s is leased already", a)
	}
	p.owner[a] = owner
	return nil
}

// Release ends a lease; releasing a free address does nothing.
func (p *Pool) Release(a netip.Addr) { delete(p.owner, a) }

// Next is where the next search starts, saved with the pool's leases.
func (p *Pool) Next() netip.Addr { return p.next }

// SetNext restores a saved cursor; an address outside the pool is ignored.
func (p *Pool) SetNext(a netip.Addr) {
	if p.usable(a) {
		p.next = a
	}
}

// Size is how many addresses jobs can have.
func (p *Pool) Size() int {
	return 1<<(32-p.prefix.Bits()) - 3
}

// Used is how many addresses are leased.
func (p *Pool) Used() int { return len(p.owner) }

package ipam

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/joblet-dev/joblet/proto/errdefs"
)

func TestSequentialSkipsReservedAndExhausts(t *testing.T) {
	p := New(netip.MustParsePrefix("10.1.0.0/29"))
	if g := Gateway(p.Prefix()); g.String() != "10.1.0.1" {
		t.Fatalf("gateway %v", g)
	}
	if b := Broadcast(p.Prefix()); b.String() != "10.1.0.7" {
		t.Fatalf("broadcast %v", b)
	}
	var got []string
	for i := range 5 {
		a, err := p.Allocate(string(rune('a' + i)))
		if err != nil {
			t.Fatalf("allocate %d: %v", i, err)
		}
		got = append(got, a.String())
	}
	if s := strings.Join(got, " "); s != "10.1.0.2 10.1.0.3 10.1.0.4 10.1.0.5 10.1.0.6" {
		t.Fatalf("allocated %s", s)
	}
	_, err := p.Allocate("f")
	if !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "10.1.0.0/29 is full") {
		t.Fatalf("full pool: %v", err)
	}
	p.Release(netip.MustParseAddr("10.1.0.3"))
	if a, err := p.Allocate("g"); err != nil || a.String() != "10.1.0.3" {
		t.Fatalf("after release: %v %v", a, err)
	}
	if p.Used() != 5 || p.Size() != 5 {
		t.Fatalf("used %d size %d", p.Used(), p.Size())
	}
}

func TestCursorAvoidsImmediateReuse(t *testing.T) {
	p := New(netip.MustParsePrefix("10.2.0.0/24"))
	a, _ := p.Allocate("1")
	p.Release(a)
	b, _ := p.Allocate("2")
	if a == b {
		t.Fatalf("released %v was reused at once", a)
	}
	q := New(p.Prefix())
	q.SetNext(p.Next())
	if err := q.Reserve(b, "2"); err != nil {
		t.Fatal(err)
	}
	c, _ := q.Allocate("3")
	if c.String() != "10.2.0.4" {
		t.Fatalf("restored pool allocated %v", c)
	}
}

func TestReserve(t *testing.T) {
	p := New(netip.MustParsePrefix("10.3.0.0/24"))
	for _, bad := range []string{"10.3.0.0", "10.3.0.1", "10.3.0.255", "10.4.0.2"} {
		if err := p.Reserve(netip.MustParseAddr(bad), "x"); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Reserve(%s) = %v", bad, err)
		}
	}
	a := netip.MustParseAddr("10.3.0.9")
	if err := p.Reserve(a, "x"); err != nil {
		t.Fatal(err)
	}
	if err := p.Reserve(a, "y"); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("double reserve: %v", err)
	}
	for range 252 {
		if got, err := p.Allocate("z"); err != nil || got == a {
			t.Fatalf("allocate: %v %v", got, err)
		}
	}
	if _, err := p.Allocate("z"); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Fatalf("want exhausted, got %v", err)
	}
}

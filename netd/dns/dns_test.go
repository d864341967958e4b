package dns

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// start runs a responder on a free loopback port.
func start(t *testing.T, upstreams []string) (*Responder, string) {
	t.Helper()
	for port := 20053; port < 20153; port++ {
		ap := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
		r, err := Start(ap, upstreams, zerolog.Nop())
		if err == nil {
			t.Cleanup(func() { r.Close() })
			return r, ap.String()
		}
	}
	t.Fatal("no free port")
	return nil, ""
}

func ask(t *testing.T, server, name string, qtype uint16, network string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: network}
	resp, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("ask %s: %v", name, err)
	}
	return resp
}

func TestAnswersAndForwards(t *testing.T) {
	up, upAddr := start(t, nil)
	up.Set("example.test", netip.MustParseAddr("198.51.100.7"))

	r, addr := start(t, []string{"127.0.0.1:1", upAddr}) // the first upstream is dead
	r.Set("api", netip.MustParseAddr("10.1.0.2"))
	r.Set("job-42", netip.MustParseAddr("10.1.0.3"))

	for _, network := range []string{"udp", "tcp"} {
		resp := ask(t, addr, "API", dns.TypeA, network)
		if len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "10.1.0.2" || !resp.Authoritative {
			t.Fatalf("%s api: %v", network, resp)
		}
		resp = ask(t, addr, "job-42", dns.TypeAAAA, network)
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 0 {
			t.Fatalf("%s AAAA of a job: %v", network, resp)
		}
		resp = ask(t, addr, "example.test", dns.TypeA, network)
		if len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "198.51.100.7" {
			t.Fatalf("%s forwarded: %v", network, resp)
		}
	}
	r.Delete("api")
	// Forwarded now; the upstream does not know it either.
	if resp := ask(t, addr, "api", dns.TypeA, "udp"); len(resp.Answer) != 0 {
		t.Fatalf("deleted name still answers: %v", resp)
	}
}

func TestNoUpstreamIsServfail(t *testing.T) {
	_, addr := start(t, nil)
	if resp := ask(t, addr, "example.test", dns.TypeA, "udp"); resp.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %d", resp.Rcode)
	}
}

func TestUpstreams(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(p, []byte("# comment\nsearch example.com\nnameserver 10.255.255.53\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:2\n"), 0o644)
	got, err := Upstreams(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.255.255.53:53", "[fe80::1%eth0]:53"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
}

// A responder closed right after it started gives its address back: a
// network whose creation fails just after its DNS started (its state could
// not be saved) can be created again at once.
func TestCloseRightAfterStartFreesTheAddress(t *testing.T) {
	r, addr := start(t, nil)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort(addr)
	for i := range 200 {
		r, err := Start(ap, nil, zerolog.Nop())
		if err != nil {
			t.Fatalf("start %d on %s after a close: %v", i, ap, err)
		}
		if err := r.Close(); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
	}
}

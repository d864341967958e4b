// Package dns is netd's name service for one network: a small responder
// on the bridge's gateway address that answers the names of the network's
// jobs itself and forwards every other question to the host's resolvers.
package dns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// ttl is short because jobs come and go and addresses are reused.
const ttl = 5

// forwardTimeout bounds one upstream exchange.
const forwardTimeout = 2 * time.Second

// Responder answers DNS on one address, over UDP and TCP.
type Responder struct {
	log       zerolog.Logger
	upstreams []string // host:port
	udp, tcp  *dns.Server
	// served is done once both servers' goroutines have returned: only
	// then are their sockets closed (the library closes a server's socket
	// on its way out, and a Close racing it returns before the close).
	served sync.WaitGroup

	mu   sync.RWMutex
	zone map[string]netip.Addr // lowercase name without trailing dot
}

// Start listens on addr and serves until Close. upstreams are host:port
// pairs that questions about other names go to.
func Start(addr netip.AddrPort, upstreams []string, log zerolog.Logger) (*Responder, error) {
	r := &Responder{log: log, upstreams: upstreams, zone: map[string]netip.Addr{}}
	pc, err := net.ListenPacket("udp4", addr.String())
	if err != nil {
		return nil, fmt.Errorf("dns on udp %s: %w", addr, err)
	}
	l, err := net.Listen("tcp4", addr.String())
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("dns on tcp %s: %w", addr, err)
	}
	// Start returns once both servers run: a Shutdown before that (a
	// network whose creation fails right after) would find nothing started,
	// leave the sockets to the servers' goroutines, and keep the address
	// bound for good.
	started := make(chan struct{}, 2)
	failed := make(chan error, 2)
	r.udp = &dns.Server{PacketConn: pc, Handler: r, NotifyStartedFunc: func() { started <- struct{}{} }}
	r.tcp = &dns.Server{Listener: l, Handler: r, NotifyStartedFunc: func() { started <- struct{}{} }}
	r.served.Add(2)
	for _, s := range []*dns.Server{r.udp, r.tcp} {
		go func() {
			defer r.served.Done()
			err := s.ActivateAndServe()
			if err != nil {
				log.Error().Err(err).Str("addr", addr.String()).Msg("dns responder stopped")
			}
			failed <- err
		}()
	}
	for range 2 {
		select {
		case <-started:
		case err := <-failed:
			pc.Close()
			l.Close()
			return nil, fmt.Errorf("dns on %s: %w", addr, err)
		}
	}
	return r, nil
}

// Set makes name resolve to ip.
func (r *Responder) Set(name string, ip netip.Addr) {
	r.mu.Lock()
	r.zone[strings.ToLower(name)] = ip
	r.mu.Unlock()
}

// Delete forgets name.
func (r *Responder) Delete(name string) {
	r.mu.Lock()
	delete(r.zone, strings.ToLower(name))
	r.mu.Unlock()
}

// Close stops serving and returns once the address is free again.
func (r *Responder) Close() error {
	err := errors.Join(r.udp.Shutdown(), r.tcp.Shutdown())
	r.served.Wait()
	return err
}

func (r *Responder) lookup(name string) (netip.Addr, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ip, ok := r.zone[strings.TrimSuffix(strings.ToLower(name), ".")]
	return ip, ok
}

// ServeDNS implements dns.Handler.
func (r *Responder) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		w.WriteMsg(m.SetRcode(req, dns.RcodeFormatError))
		return
	}
	q := req.Question[0]
	if ip, ok := r.lookup(q.Name); ok {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		m.RecursionAvailable = true
		if q.Qtype == dns.TypeA && q.Qclass == dns.ClassINET {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl},
				A:   ip.AsSlice(),
			})
		}
		w.WriteMsg(m) // other types of a known name: no data
		return
	}
	w.WriteMsg(r.forward(req, w.RemoteAddr().Network()))
}

// forward asks the upstreams in turn and relays the first answer.
func (r *Responder) forward(req *dns.Msg, network string) *dns.Msg {
	c := &dns.Client{Net: network, Timeout: forwardTimeout}
	for _, up := range r.upstreams {
		ctx, cancel := context.WithTimeout(context.Background(), forwardTimeout)
		resp, _, err := c.ExchangeContext(ctx, req, up)
		cancel()
		if err == nil {
			return resp
		}
		r.log.Debug().Err(err).Str("upstream", up).Msg("dns forward failed")
	}
	m := new(dns.Msg)
	return m.SetRcode(req, dns.RcodeServerFailure)
}

// Upstreams reads the nameservers of a resolv.conf file as host:53 pairs.
func Upstreams(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read resolvers: %w", err)
	}
	defer f.Close()
	var ups []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		if a, err := netip.ParseAddr(fields[1]); err == nil {
			ups = append(ups, netip.AddrPortFrom(a, 53).String())
		}
	}
	return ups, sc.Err()
}

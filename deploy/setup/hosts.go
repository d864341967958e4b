package setup

import (
	"net"
	"os"
)

// LocalHosts lists what the server certificate should cover besides the
// chosen address: the host name, every non-loopback address, and loopback,
// so that clients on the server itself and on other machines all verify.
func LocalHosts() []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	return append(hosts, interfaceIPs()...)
}

// DefaultAddress is the address clients are told to use when none is given:
// the first non-loopback IPv4 address, else the first other one, else the
// host name, else loopback.
func DefaultAddress() string {
	ips := interfaceIPs()
	for _, s := range ips {
		if ip := net.ParseIP(s); ip != nil && ip.To4() != nil {
			return s
		}
	}
	if len(ips) > 0 {
		return ips[0]
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "127.0.0.1"
}

// interfaceIPs are the host's global unicast addresses.
func interfaceIPs() []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.IsGlobalUnicast() {
			out = append(out, n.IP.String())
		}
	}
	return out
}

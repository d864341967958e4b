package app

import (
	"net"
	"strconv"
	"time"

	"github.com/joblet-dev/joblet/proto/clientconfig"
	"github.com/joblet-dev/joblet/proto/config"
	"github.com/joblet-dev/joblet/supervisor/devcerts"
	"github.com/joblet-dev/joblet/supervisor/devenv"
)

// listenHost is where the gateway listens in embedded mode: this machine only.
const listenHost = "127.0.0.1"

func gatewayAddr(port int) string { return net.JoinHostPort(listenHost, strconv.Itoa(port)) }

// daemonConfig is the joblet-config.yml of embedded mode.
func daemonConfig(l devenv.Layout, runDir string, id devenv.Identity, port int, grace time.Duration, b devcerts.Bundle) config.Config {
	c := config.Default()
	c.Server = config.Server{Address: listenHost, Port: port}
	c.Paths = config.Paths{RunDir: runDir, StateDir: l.StateDir()}
	c.Gateway = config.Gateway{UID: id.UID, GID: id.GID}
	c.Security = config.Security{
		ServerCert: string(b.Server.CertPEM),
		ServerKey:  string(b.Server.KeyPEM),
		CACert:     string(b.CA.CertPEM),
	}
	c.Joblet.StopGracePeriod = grace
	// A developer's Ctrl-C leaves no job running; a crashed isolator's
	// jobs still run on under their shims and the restarted one adopts them.
	c.Joblet.StopJobsOnExit = true
	// A developer's Ctrl-C leaves no bridge, veth or iptables rule behind;
	// the networks are saved and come back at the next start.
	c.Network.CleanupOnExit = true
	return c
}

// clientConfig is an rnx config with one node, "default", at addr.
func clientConfig(addr string, cert, key, ca []byte) *clientconfig.Config {
	return &clientconfig.Config{
		Version: "1",
		Nodes: map[string]*clientconfig.Node{clientconfig.DefaultNode: {
			Address: addr, Cert: string(cert), Key: string(key), CA: string(ca),
		}},
	}
}

// ensureClientConfig writes want to path unless the file already holds the
// same default node (so a changed port or renewed certificate rewrites it and
// nothing else does). It reports whether it wrote.
func ensureClientConfig(path string, want *clientconfig.Config) (bool, error) {
	if have, err := clientconfig.Load(path); err == nil {
		if n, ok := have.Nodes[clientconfig.DefaultNode]; ok && *n == *want.Nodes[clientconfig.DefaultNode] {
			return false, nil
		}
	}
	return true, clientconfig.Save(want, path)
}

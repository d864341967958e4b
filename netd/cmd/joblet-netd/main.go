// Command joblet-netd owns Joblet's networks: bridges, veth pairs, address
// leases, firewall rules and name resolution, served to the gateway and the
// isolator over its Unix socket.
package main

import (
	"os"

	"github.com/joblet-dev/joblet/netd/service"
	"github.com/joblet-dev/joblet/proto/daemon"
)

func main() { os.Exit(daemon.Main("netd", service.Run)) }

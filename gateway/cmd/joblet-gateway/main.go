// Command joblet-gateway is Joblet's public front: mTLS gRPC on TCP, role
// checks, request validation, forwarding to the root helpers. It runs as an
// unprivileged user.
package main

import (
	"os"

	"github.com/joblet-dev/joblet/gateway/service"
	"github.com/joblet-dev/joblet/proto/daemon"
)

func main() {
	os.Exit(daemon.Main("gateway", service.Run, daemon.WithoutSocket()))
}

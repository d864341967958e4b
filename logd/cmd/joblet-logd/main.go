// Command joblet-logd keeps the output of every Joblet job and serves it to
// the gateway and the isolator over its Unix socket.
package main

import (
	"os"

	"github.com/joblet-dev/joblet/logd/service"
	"github.com/joblet-dev/joblet/proto/daemon"
)

func main() { os.Exit(daemon.Main("logd", service.Run)) }

// Command joblet-scheduler keeps the queue of scheduled Joblet jobs and asks
// the isolator to start each one when it falls due. Its socket is for root
// only: the isolator calls it, the gateway never does.
package main

import (
	"os"

	"github.com/joblet-dev/joblet/proto/daemon"
	"github.com/joblet-dev/joblet/scheduler/service"
)

func main() { os.Exit(daemon.Main("scheduler", service.Run)) }

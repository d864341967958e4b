// Command rnx is the Joblet CLI: it runs commands in isolated jobs on a
// Joblet server and reports on them.
package main

import (
	"os"

	"github.com/joblet-dev/joblet/rnx/cli"
)

func main() {
	os.Exit(cli.Main(cli.OSEnv(os.Args[1:])))
}

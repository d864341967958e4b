// Command joblet-certs sets up a server installation's certificates and
// configs (init, run by the package's postinst) and issues further client
// configs signed by the installation's CA (client).
package main

import (
	"fmt"
	"os"

	"github.com/joblet-dev/joblet/deploy/setup"
)

func main() {
	if err := setup.Main(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "joblet-certs:", err)
		os.Exit(1)
	}
}

// Command joblet-certs sets up a server installation's certificates and
// configs (init, run by the package's postinst) and issues further client
// configs signed by the installation's CA (client), and revokes client
// certificates (revoke).
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/joblet-dev/joblet/deploy/setup"
)

func main() {
	run := setup.Main
	if len(os.Args) > 1 && os.Args[1] == "revoke" {
		run = func(args []string, stdout, stderr io.Writer) error { return revokeCmd(args[1:], stdout, stderr) }
	}
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "joblet-certs:", err)
		os.Exit(1)
	}
}

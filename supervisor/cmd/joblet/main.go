// Command joblet is the embedded-mode supervisor: it runs the whole Joblet
// suite in the foreground on a dev machine (see supervisor/README.md).
package main

import (
	"os"

	"github.com/joblet-dev/joblet/supervisor/app"
)

func main() { os.Exit(app.Main()) }

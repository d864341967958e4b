// Command joblet-bench measures a private Joblet suite against the
// baselines of issue 9 and prints one table (see bench/README.md).
package main

import (
	"os"

	"github.com/joblet-dev/joblet/bench/internal/app"
)

func main() { os.Exit(app.Main(os.Args[1:])) }

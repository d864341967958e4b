package scenarios

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// RNX runs bin/rnx as a user would, with the admin client config.
type RNX struct {
	Path   string
	Config string
}

func (r RNX) command(args ...string) *exec.Cmd {
	cmd := exec.Command(r.Path, args...)
	// TLS sessions kept beside the config (the suite's dev dir), as a
	// user's are kept between commands, not in the home directory.
	cmd.Env = append(os.Environ(), "RNX_CONFIG="+r.Config,
		"RNX_SESSION_CACHE="+filepath.Join(filepath.Dir(r.Config), "rnx-tls-sessions"))
	return cmd
}

// Has says whether `rnx SUBCOMMAND --help` mentions flag.
func (r RNX) Has(subcommand, flag string) bool {
	out, _ := r.command(subcommand, "--help").CombinedOutput()
	return strings.Contains(string(out), flag)
}

// RunLatency times `rnx run ARGS...` n times (after a few unmeasured runs),
// each a new rnx process: start, TLS handshake, RunJob, attach, exit code.
// With pause, each run starts that long after the previous one ended, as
// commands a user types do; without, they follow each other at once.
func (r RNX) RunLatency(n int, pause time.Duration, args ...string) ([]time.Duration, error) {
	var out []time.Duration
	for i := -3; i < n; i++ {
		time.Sleep(pause)
		d, _, err := r.Run(nil, args...)
		if err != nil {
			return nil, err
		}
		if i >= 0 {
			out = append(out, d)
		}
	}
	return out, nil
}

var idLine = regexp.MustCompile(`(?m)^ID:\s*(\S+)`)

// Run runs `rnx run ARGS...` once with stdout to /dev/null (or to stdout
// when given) and returns its wall time and the job id from its header.
func (r RNX) Run(stdout *os.File, args ...string) (time.Duration, string, error) {
	cmd := r.command(append([]string{"run"}, args...)...)
	if stdout != nil {
		cmd.Stdout = stdout
	} else {
		devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return 0, "", err
		}
		defer devNull.Close()
		cmd.Stdout = devNull
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return 0, "", fmt.Errorf("rnx run %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	m := idLine.FindStringSubmatch(stderr.String())
	if m == nil {
		return 0, "", fmt.Errorf("rnx run %s: no job id in its header: %q", strings.Join(args, " "), stderr.String())
	}
	return d, m[1], nil
}

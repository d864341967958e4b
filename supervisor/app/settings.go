package app

import (
	"fmt"
	"strconv"
	"time"

	"github.com/joblet-dev/joblet/proto/logging"
)

// Environment variables that tune embedded mode.
const (
	EnvPort      = "JOBLET_PORT"       // gateway TCP port
	EnvStopGrace = "JOBLET_STOP_GRACE" // joblet.stopGracePeriod, a Go duration
	EnvLogFormat = "JOBLET_LOG_FORMAT" // passed on to the services
	defaultPort  = 50051
	defaultGrace = 10 * time.Second
)

// settings are the knobs read from the environment.
type settings struct {
	Port  int
	Grace time.Duration
	// LogLevel is JOBLET_LOG_LEVEL as given (checked), passed on to the
	// services; empty leaves them at their default.
	LogLevel string
}

func settingsFrom(getenv func(string) string) (settings, error) {
	s := settings{Port: defaultPort, Grace: defaultGrace}
	if v := getenv(EnvPort); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			return s, fmt.Errorf("%s=%q: want a port number from 1 to 65535", EnvPort, v)
		}
		s.Port = p
	}
	if v := getenv(EnvStopGrace); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return s, fmt.Errorf("%s=%q: want a non-negative duration such as 10s", EnvStopGrace, v)
		}
		s.Grace = d
	}
	if v := getenv(logging.EnvLevel); v != "" {
		if _, err := logging.ParseLevel(v); err != nil {
			return s, err
		}
		s.LogLevel = v
	}
	return s, nil
}

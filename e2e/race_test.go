package e2e

import (
	"debug/buildinfo"
	"path/filepath"
	"sync"
	"time"
)

// raceFactor is how many times more time and memory the suite's daemons
// need than a normal build: 1, or raceSlowdown when they were built with
// the race detector (make reliability runs the suite against bin-race).
// Such a build runs several times slower and its memory holds the
// detector's shadow and history, so timing margins and memory bounds are
// scaled by it, and RSS is not compared across a soak (the detector's
// memory grows with what it has seen; leaks are the long soak's job,
// which runs against the normal build).
func raceFactor() int {
	raceOnce.Do(func() {
		raceBuilt = false
		if theSuite == nil {
			return
		}
		bi, err := buildinfo.ReadFile(filepath.Join(theSuite.binDir, "joblet-isolator"))
		if err != nil {
			return
		}
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				raceBuilt = true
			}
		}
	})
	if raceBuilt {
		return raceSlowdown
	}
	return 1
}

// raceSlowdown is the factor for race-built daemons: the detector's
// documented cost is 2-20x in time and 5-10x in memory; 4 covers what the
// suite saw on this machine.
const raceSlowdown = 4

var (
	raceOnce  sync.Once
	raceBuilt bool
)

// scaled is d scaled by raceFactor.
func scaled(d time.Duration) time.Duration { return d * time.Duration(raceFactor()) }

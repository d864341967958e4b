package service

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"

	"github.com/joblet-dev/joblet/isolator/sandbox"
)

// useInitBinary makes jobs' inits run from the init binary installed beside
// the isolator's executable (make build and the package put it there). It
// links only the sandbox package, so each job's init starts
// faster and the init, which stays for the job's life, holds less memory.
// Without it, inits run from the isolator's own binary; one that is there
// but unsafe (writable by others) stops the isolator.
func useInitBinary(log zerolog.Logger) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the isolator's executable: %w", err)
	}
	path := filepath.Join(filepath.Dir(exe), sandbox.InitBinary)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		log.Warn().Str("path", path).Msg("no init binary beside the isolator; jobs' inits run from the isolator's own binary (slower starts, more memory per job)")
		return nil
	}
	if err := sandbox.UseInitBinary(path); err != nil {
		return err
	}
	log.Info().Str("path", path).Msg("jobs' inits run from the init binary")
	// The reaper, beside it, is what each init becomes once its command
	// runs. Without it (a build of the Go binaries alone) inits stay as
	// they are, a few MB more per running job: said once. One there but
	// unsafe stops the isolator, as for the init.
	reaper := filepath.Join(filepath.Dir(exe), sandbox.ReaperBinary)
	if _, err := os.Lstat(reaper); errors.Is(err, fs.ErrNotExist) {
		log.Warn().Str("path", reaper).Msg("no reaper binary beside the isolator; jobs' inits stay for their job's life (more memory per running job)")
		return nil
	}
	if err := sandbox.UseReaperBinary(reaper); err != nil {
		return err
	}
	log.Info().Str("path", reaper).Msg("jobs' inits hand over to the reaper binary once their command runs")
	return nil
}

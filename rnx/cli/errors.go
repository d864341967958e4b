package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// usageError is a mistake in how rnx was called; rnx exits 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// failure is an error while doing what was asked; rnx exits 1.
type failure struct{ err error }

func (e *failure) Error() string { return e.err.Error() }
func (e *failure) Unwrap() error { return e.err }

// exitCode ends rnx with a code and no further message: an attached job's
// exit code, with anything worth saying already printed.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// runE adapts a command body so its errors count as failures unless they
// already say otherwise.
func runE(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := fn(cmd, args)
		switch err.(type) {
		case nil, *usageError, exitCode:
			return err
		}
		return &failure{err}
	}
}

// exactArgs is cobra.ExactArgs with a usage error that names what is wanted.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return &usageError{fmt.Errorf("%s: want %s (usage: %s)", cmd.Name(), what, cmd.UseLine())}
		}
		return nil
	}
}

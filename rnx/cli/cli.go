// Package cli is rnx's command line: the cobra command tree, config and node
// selection, and the mapping of outcomes to exit codes.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/joblet-dev/joblet/proto/clientconfig"
	"github.com/joblet-dev/joblet/rnx/client"
	"github.com/joblet-dev/joblet/rnx/configfile"
	"github.com/joblet-dev/joblet/rnx/termsafe"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Env is everything rnx takes from its process, so tests can run it
// in-process.
type Env struct {
	Args           []string
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Dir            string // working directory
	Home           string // home directory, "" if unknown
	SystemConfig   string // the system config path; configfile.SystemConfig if ""
	// IsTerminal reports whether w is a terminal; job output written to a
	// terminal has its control characters made visible.
	IsTerminal func(w io.Writer) bool
	// Signals delivers SIGINT and SIGTERM while an attached run waits; the
	// returned func stops delivery.
	Signals func() (<-chan os.Signal, func())
	Now     func() time.Time
	// ExitAfter says the process exits as soon as Main returns: the
	// connection to the gateway is then left for the kernel to close (see
	// client.Conn.Leave) instead of being closed in order.
	ExitAfter bool
}

// OSEnv is the Env of the running process with the given arguments.
func OSEnv(args []string) Env {
	dir, _ := os.Getwd()
	home, _ := os.UserHomeDir()
	return Env{
		Args:   args,
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		Getenv: os.Getenv,
		Dir:    dir,
		Home:   home,
		IsTerminal: func(w io.Writer) bool {
			f, ok := w.(*os.File)
			return ok && term.IsTerminal(int(f.Fd()))
		},
		Signals: func() (<-chan os.Signal, func()) {
			ch := make(chan os.Signal, 2)
			signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
			return ch, func() { signal.Stop(ch) }
		},
		Now:       time.Now,
		ExitAfter: true,
	}
}

// Exit codes of rnx itself; an attached run exits with the job's code.
const (
	ExitFailure = 1
	ExitUsage   = 2
)

// Main runs rnx and returns its exit code. Errors are printed as one line,
// "rnx: <message>", on stderr.
func Main(env Env) int {
	a := &app{env: env}
	root := a.rootCommand()
	root.SetArgs(env.Args)
	err := root.ExecuteContext(context.Background())
	var (
		exit  exitCode
		usage *usageError
	)
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return int(exit)
	case errors.As(err, &usage):
		a.printError(err)
		return ExitUsage
	case errors.As(err, new(*failure)):
		a.printError(err)
		return ExitFailure
	default: // cobra's own errors: unknown command, bad arguments
		a.printError(err)
		return ExitUsage
	}
}

// app is one invocation of rnx.
type app struct {
	env        Env
	configPath string // --config
	nodeName   string // --node
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "rnx",
		Short: "rnx runs commands in isolated jobs on a Joblet server",
		Long: "rnx runs commands in isolated, resource-limited jobs on a Joblet server\n" +
			"and streams their output back, over mutual TLS.",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.DisableSuggestions = true // their multi-line text does not fit one error line
	root.SetOut(a.env.Stdout)
	root.SetErr(a.env.Stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.PersistentFlags().StringVar(&a.configPath, "config", "", "client config file (default: see rnx config-help)")
	root.PersistentFlags().StringVar(&a.nodeName, "node", "", "node from the config to use (default $JOBLET_NODE, else \"default\")")
	root.AddCommand(a.runCommand(), a.listCommand(), a.statusCommand(), a.logCommand(),
		a.stopCommand(), a.networkCommand(), a.nodesCommand(), a.configHelpCommand())
	return root
}

// node is the node name in effect: --node, else JOBLET_NODE, else default.
func (a *app) node() string {
	if a.nodeName != "" {
		return a.nodeName
	}
	if n := a.env.Getenv("JOBLET_NODE"); n != "" {
		return n
	}
	return clientconfig.DefaultNode
}

// loadConfig finds and reads the client config.
func (a *app) loadConfig() (*clientconfig.Config, error) {
	path, err := configfile.Locate(configfile.Env{
		Flag:   a.configPath,
		Getenv: a.env.Getenv,
		Dir:    a.env.Dir,
		Home:   a.env.Home,
		System: a.env.SystemConfig,
	})
	if err != nil {
		return nil, err
	}
	return clientconfig.Load(path)
}

// connect opens a connection to the selected node for the given calls
// (full gRPC method names, in the order they will be made).
func (a *app) connect(calls ...string) (*client.Conn, error) {
	// Before the config is read, so that the calls' messages are set up
	// while rnx reads it and then waits for the server.
	client.Warm(calls...)
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, err
	}
	node, err := cfg.Node(a.node())
	if err != nil {
		return nil, err
	}
	conn, err := client.Dial(node, configfile.SessionCache(a.env.Getenv, a.env.Home))
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", a.node(), err)
	}
	return conn, nil
}

// printError writes err as one safe line on stderr; the lines of a joined
// error become "; "-separated parts.
func (a *app) printError(err error) {
	var parts []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	fmt.Fprintf(a.env.Stderr, "rnx: %s\n", termsafe.String(strings.Join(parts, "; ")))
}

// withConn connects to the node for calls (see connect), calls fn with the
// connection and closes it.
func (a *app) withConn(calls []string, fn func(*client.Conn) error) error {
	conn, err := a.connect(calls...)
	if err != nil {
		return err
	}
	defer a.release(conn)
	return fn(conn)
}

// release ends a command's use of conn: in a process that exits right
// after, the kernel closes the connection (see Env.ExitAfter).
func (a *app) release(conn *client.Conn) {
	if a.env.ExitAfter {
		conn.Leave()
		return
	}
	conn.Close()
}

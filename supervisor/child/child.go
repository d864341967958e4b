// Package child runs one Joblet service as a go-plugin child process: it
// starts the binary and completes the handshake, reports when the process
// ends, and stops it gracefully (go-plugin's shutdown) and then by force.
package child

import (
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/rs/zerolog"

	"github.com/joblet-dev/joblet/proto/daemon"
)

// Spec is how to run one service.
type Spec struct {
	Name string   // service name, for logs
	Path string   // the binary
	Args []string // after the binary name
	// Env is the whole environment of the child; go-plugin adds its own
	// handshake variables and nothing from ours.
	Env []string
	// Cred, when set, runs the child as another user; nil runs it as we run.
	Cred *syscall.Credential
	// PluginDir is where the child creates go-plugin's Unix socket; it must
	// be writable by the child's user.
	PluginDir string
	// StopTimeout bounds a graceful stop before the child is killed.
	StopTimeout time.Duration
}

// Proc is one running instance of a service.
type Proc struct {
	spec    Spec
	client  *plugin.Client
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{}
}

// pollEvery is how often Proc checks whether the process ended; go-plugin
// offers only Exited() to ask.
const pollEvery = 50 * time.Millisecond

// Start launches spec and completes the go-plugin handshake. stderr receives
// the child's own stderr (its log lines); log receives go-plugin's errors.
func Start(spec Spec, log zerolog.Logger, stderr io.Writer) (*Proc, error) {
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Env = append(append([]string{}, spec.Env...), plugin.EnvUnixSocketDir+"="+spec.PluginDir)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// A supervisor that dies without stopping its children still ends them.
		Pdeathsig: syscall.SIGTERM,
		// Out of the terminal's process group: Ctrl-C reaches the supervisor
		// only, which then stops the services in order.
		Setpgid:    true,
		Credential: spec.Cred,
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  daemon.Handshake,
		Plugins:          map[string]plugin.Plugin{daemon.PluginName: daemon.Plugin{}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hclogger(log, spec.Path),
		Stderr:           stderr,
		SkipHostEnv:      true,
		StartTimeout:     30 * time.Second,
	})
	p := &Proc{spec: spec, client: client, cmd: cmd, done: make(chan struct{})}
	rpc, err := client.Client()
	if err == nil {
		_, err = rpc.Dispense(daemon.PluginName)
	}
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p.started = time.Now()
	go p.watch()
	return p, nil
}

func (p *Proc) watch() {
	for !p.client.Exited() {
		time.Sleep(pollEvery)
	}
	close(p.done)
}

// Pid is the child's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Started is when the handshake completed.
func (p *Proc) Started() time.Time { return p.started }

// Done is closed when the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Stop asks the service to stop over the plugin connection (the daemon then
// cancels the service and waits for it), waits up to the spec's StopTimeout,
// then lets go-plugin kill whatever is left and clean up after it. Stop
// returns once the process is gone; killed reports that it had to be killed.
func (p *Proc) Stop() (killed bool) {
	select {
	case <-p.done:
	default:
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			if rpc, err := p.client.Client(); err == nil {
				rpc.Close()
			}
		}()
		select {
		case <-p.done:
		case <-time.After(p.spec.StopTimeout):
			killed = true
		}
		<-closed
	}
	p.client.Kill()
	<-p.done
	return killed
}

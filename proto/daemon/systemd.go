package daemon

import (
	"fmt"
	"net"
	"sync"

	"github.com/coreos/go-systemd/v22/activation"
	sdnotify "github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"
)

// activated returns the socket systemd passed for service name (socket
// activation), or nil when there is none. The socket unit names it with
// FileDescriptorName=<name>; a unit without that setting names it after
// itself (joblet-<name>.socket), which is accepted too. Other passed
// sockets are closed: nothing here would serve them.
func activated(name string) (net.Listener, error) {
	byName, err := activation.ListenersWithNames()
	if err != nil {
		return nil, fmt.Errorf("sockets passed by systemd: %w", err)
	}
	var mine net.Listener
	for n, ls := range byName {
		for _, l := range ls {
			if mine == nil && (n == name || n == "joblet-"+name+".socket") {
				mine = l
				continue
			}
			l.Close()
		}
	}
	return mine, nil
}

// notifier returns a function that tells systemd, once, that the service is
// ready.
func notifier(log zerolog.Logger) func() {
	var once sync.Once
	return func() { once.Do(func() { notify(log, sdnotify.SdNotifyReady) }) }
}

// notify sends state to systemd when it waits for notifications
// (NOTIFY_SOCKET is set); elsewhere it does nothing.
func notify(log zerolog.Logger, state string) {
	sent, err := sdnotify.SdNotify(false, state)
	switch {
	case err != nil:
		log.Warn().Err(err).Str("state", state).Msg("notify systemd")
	case sent:
		log.Debug().Str("state", state).Msg("notified systemd")
	}
}

// readyListener reports the service ready when it first accepts: a service
// calls Accept only once it has set itself up and is serving.
type readyListener struct {
	net.Listener
	ready func()
}

func (l readyListener) Accept() (net.Conn, error) {
	l.ready()
	return l.Listener.Accept()
}

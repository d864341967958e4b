package service

import (
	"strings"
	"testing"

	"github.com/joblet-dev/joblet/proto/config"
)

func TestUserNamespaceAtStart(t *testing.T) {
	if u, err := userNamespace(config.UserNamespace{Enabled: false, HostUID: 0}); u != nil || err != nil {
		t.Errorf("disabled: %+v, %v; want none", u, err)
	}
	// Refused with the way out in the message.
	_, err := userNamespace(config.UserNamespace{Enabled: true, HostUID: 0, HostGID: 0, Size: 65536})
	if err == nil || !strings.Contains(err.Error(), "joblet.userNamespace.enabled: false") {
		t.Errorf("a range mapping the host's root: %v", err)
	}
	requiresRoot(t)
	d := config.Default().Joblet.UserNamespace
	u, err := userNamespace(d)
	if err != nil || u == nil || u.HostUID != d.HostUID || u.HostGID != d.HostGID || u.Size != d.Size {
		t.Errorf("the default on this host: %+v, %v", u, err)
	}
}

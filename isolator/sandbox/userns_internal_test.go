package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckHostIDs(t *testing.T) {
	etc := t.TempDir()
	files := map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nodd:x:200000:5::/:/bin/false\n\n#comment\n",
		"group":  "root:x:0:\nalice:x:1000:\nbig:x:300000:\n",
		"subuid": "alice:100000:65536\n",
		"subgid": "alice:400000:65536\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		u    UserNS
		want string // part of the error; "" for none
	}{
		{UserNS{HostUID: 1879048192, HostGID: 1879048192, Size: 65536}, ""},
		{UserNS{HostUID: 165536, HostGID: 165536, Size: 10}, ""},
		{UserNS{HostUID: 165535, HostGID: 165536, Size: 1}, `subordinate uid range of "alice"`},
		{UserNS{HostUID: 36000, HostGID: 500000, Size: 65536}, `subordinate uid range of "alice"`},
		{UserNS{HostUID: 500, HostGID: 500000, Size: 501}, `user "alice"`},
		{UserNS{HostUID: 500, HostGID: 500000, Size: 500}, ""},
		{UserNS{HostUID: 199999, HostGID: 1, Size: 1}, ""},
		{UserNS{HostUID: 200000, HostGID: 900000, Size: 1}, `user "odd"`},
		{UserNS{HostUID: 900000, HostGID: 299999, Size: 2}, `group "big"`},
		{UserNS{HostUID: 900000, HostGID: 465535, Size: 2}, `subordinate gid range of "alice"`},
	} {
		err := checkHostIDs(c.u, etc)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v", c.u, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: %v, want an error naming %s", c.u, err, c.want)
		}
	}
	if err := checkHostIDs(UserNS{HostUID: 1, HostGID: 1, Size: 1}, filepath.Join(etc, "missing")); err != nil {
		t.Errorf("no files: %v", err)
	}
}

// Package configfile finds the rnx client config (an explicit path first,
// then the dev suite's admin config, then the per-user and system files)
// and the file where rnx keeps its TLS sessions.
package configfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Names of the places rnx looks in, relative to their base directory.
const (
	// DevConfig is the admin config `make run` leaves in the dev directory.
	DevConfig = "rnx-admin.yml"
	// DevDir is the dev directory at the repository root.
	DevDir = ".dev"
	// UserConfig is the per-user config, under the home directory.
	UserConfig = ".rnx/rnx-config.yml"
	// SystemConfig is where the Debian package installs the config.
	SystemConfig = "/opt/joblet/config/rnx-config.yml"
)

// Env is what discovery looks at, so tests can supply their own.
type Env struct {
	Flag   string              // the --config value, "" if not given
	Getenv func(string) string // RNX_CONFIG and JOBLET_DEV_DIR
	Dir    string              // the working directory; the walk up starts here
	Home   string              // the home directory, "" if unknown
	System string              // the system config path; SystemConfig if ""
}

// ErrNotFound is returned (wrapped) when no config exists in any place.
var ErrNotFound = errors.New("no rnx config found")

// Locate returns the config path to use. In order: --config, RNX_CONFIG,
// $JOBLET_DEV_DIR/rnx-admin.yml, .dev/rnx-admin.yml in the working
// directory or any parent, ~/.rnx/rnx-config.yml, the system config.
// An explicit path (flag or RNX_CONFIG) is returned even if it does not
// exist, so the user gets an error about the file they named.
func Locate(e Env) (string, error) {
	if e.Flag != "" {
		return e.Flag, nil
	}
	if p := e.Getenv("RNX_CONFIG"); p != "" {
		return p, nil
	}
	var looked []string
	if dev := e.Getenv("JOBLET_DEV_DIR"); dev != "" {
		p := filepath.Join(dev, DevConfig)
		if exists(p) {
			return p, nil
		}
		looked = append(looked, p)
	}
	if e.Dir != "" {
		if p, ok := walkUp(e.Dir); ok {
			return p, nil
		}
		looked = append(looked, filepath.Join(DevDir, DevConfig)+" in "+e.Dir+" and its parents")
	}
	if e.Home != "" {
		p := filepath.Join(e.Home, UserConfig)
		if exists(p) {
			return p, nil
		}
		looked = append(looked, p)
	}
	system := e.System
	if system == "" {
		system = SystemConfig
	}
	if exists(system) {
		return system, nil
	}
	looked = append(looked, system)
	return "", fmt.Errorf("%w; looked in: %s; use --config PATH or RNX_CONFIG (rnx config-help shows an example)",
		ErrNotFound, strings.Join(looked, ", "))
}

// walkUp looks for .dev/rnx-admin.yml in dir and each parent up to the root.
func walkUp(dir string) (string, bool) {
	dir = filepath.Clean(dir)
	for {
		p := filepath.Join(dir, DevDir, DevConfig)
		if exists(p) {
			return p, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// exists reports whether path names something that is not a directory. A
// path we may not look at counts too, so the user sees the permission error
// for the file rnx would have used rather than "not found".
func exists(path string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return errors.Is(err, fs.ErrPermission)
	}
	return !fi.IsDir()
}

// SessionCacheFile is the TLS session file's name under the user's cache
// directory.
const SessionCacheFile = "rnx/tls-sessions"

// SessionCache returns the file where rnx keeps its TLS sessions between
// commands, "" for none: RNX_SESSION_CACHE if set ("off": none), else
// rnx/tls-sessions under $XDG_CACHE_HOME (when absolute) or ~/.cache.
func SessionCache(getenv func(string) string, home string) string {
	switch p := getenv("RNX_SESSION_CACHE"); p {
	case "off":
		return ""
	case "":
	default:
		return p
	}
	if dir := getenv("XDG_CACHE_HOME"); filepath.IsAbs(dir) {
		return filepath.Join(dir, SessionCacheFile)
	}
	if home == "" {
		return ""
	}
	return filepath.Join(home, ".cache", SessionCacheFile)
}

package app

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/joblet-dev/joblet/supervisor/access"
	"github.com/joblet-dev/joblet/supervisor/devenv"
)

// FallbackBase holds the run directories of dev dirs the gateway cannot
// reach (for example a clone under /root, mode 0700).
const FallbackBase = "/run/joblet-dev"

// placement is where the gateway finds its sockets, config and binary.
type placement struct {
	RunDir        string // paths.runDir
	GatewayConfig string // the config file the gateway reads
	GatewayBin    string // the binary the gateway runs from
	// Fallback, when set, is the directory outside the dev dir holding the
	// above; it is removed on shutdown. Reason says why it is used.
	Fallback, Reason string
}

// place decides whether the gateway (uid/gid id) can use the dev dir and
// the binary where they are, and otherwise moves what it needs under
// base/<hash of the dev dir>.
func place(l devenv.Layout, id devenv.Identity, gatewayBin, base string) (placement, error) {
	dirOK, dirBlocker, err := access.Searchable(l.Dir, id.UID, id.GID)
	if err != nil {
		return placement{}, err
	}
	binOK, binBlocker, err := access.Executable(gatewayBin, id.UID, id.GID)
	if err != nil {
		return placement{}, err
	}
	if dirOK && binOK {
		return placement{RunDir: l.RunDir(), GatewayConfig: l.ConfigPath(), GatewayBin: gatewayBin}, nil
	}
	fb := filepath.Join(base, shortHash(l.Dir))
	p := placement{
		RunDir:        filepath.Join(fb, "run"),
		GatewayConfig: filepath.Join(fb, "joblet-config.yml"),
		GatewayBin:    gatewayBin,
		Fallback:      fb,
	}
	if !dirOK {
		p.Reason = fmt.Sprintf("%s is not searchable by the gateway user %d:%d", dirBlocker, id.UID, id.GID)
	}
	if !binOK {
		p.GatewayBin = filepath.Join(fb, filepath.Base(gatewayBin))
		if binBlocker != dirBlocker {
			if p.Reason != "" {
				p.Reason += "; "
			}
			p.Reason += fmt.Sprintf("%s is not reachable or executable by the gateway user %d:%d", binBlocker, id.UID, id.GID)
		}
	}
	return p, nil
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:6])
}

// installBinary copies src to dst, readable and executable by root and gid
// only.
func installBinary(src, dst string, gid int) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy gateway binary: %w", err)
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o700)
	if err != nil {
		return fmt.Errorf("copy gateway binary: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy gateway binary: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copy gateway binary: %w", err)
	}
	if err := os.Chown(tmp, 0, gid); err != nil {
		return fmt.Errorf("chown gateway binary: %w", err)
	}
	if err := os.Chmod(tmp, 0o750); err != nil {
		return fmt.Errorf("chmod gateway binary: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("install gateway binary: %w", err)
	}
	return nil
}

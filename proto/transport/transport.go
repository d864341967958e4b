// Package transport is the whole Unix-socket layer between Joblet services:
// listening with safe permissions, checking the peer's credentials on every
// connection, and dialing.
package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
)

// SocketPath is where service name listens inside runDir.
func SocketPath(runDir, name string) string {
	return filepath.Join(runDir, name+".sock")
}

// PrepareDir makes dir a root-owned directory that only root and group gid
// may enter (0750), creating it if needed and refusing a symlink.
func PrepareDir(dir string, gid int) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(dir), err)
	}
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := os.Chown(dir, 0, gid); err != nil {
		return fmt.Errorf("chown %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	return nil
}

// Listen listens on a Unix socket at path with mode 0660 and group gid. The
// socket is bound with a umask that already excludes other users, so there is
// no window in which it is more open than that. A stale socket is replaced.
func Listen(path string, gid int) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	old := syscall.Umask(0o117)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chown(path, 0, gid); err != nil {
		l.Close()
		return nil, fmt.Errorf("chown %s: %w", path, err)
	}
	return l, nil
}

// PeerCreds is gRPC transport credentials for Unix sockets that accept a
// connection only from a process running as one of the allowed uids (root is
// always allowed).
func PeerCreds(allowed ...int) credentials.TransportCredentials {
	return &peerCreds{allowed: append([]int{0}, allowed...)}
}

// PeerInfo is the AuthInfo of a connection accepted by PeerCreds.
type PeerInfo struct {
	credentials.CommonAuthInfo
	UID, GID, PID int
}

// AuthType implements credentials.AuthInfo.
func (PeerInfo) AuthType() string { return "peercred" }

// PeerUID returns the uid of the peer of a server call, or -1.
func PeerUID(ctx context.Context) int {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return -1
	}
	if pi, ok := p.AuthInfo.(PeerInfo); ok {
		return pi.UID
	}
	return -1
}

type peerCreds struct{ allowed []int }

// ErrPeerRefused is returned for a connection from a uid that may not connect.
var ErrPeerRefused = errors.New("peer uid not allowed")

func (c *peerCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, nil, fmt.Errorf("peer credentials need a unix socket, got %T", conn)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("raw conn: %w", err)
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return nil, nil, fmt.Errorf("control: %w", err)
	}
	if credErr != nil {
		return nil, nil, fmt.Errorf("SO_PEERCRED: %w", credErr)
	}
	if !slices.Contains(c.allowed, int(cred.Uid)) {
		conn.Close()
		return nil, nil, fmt.Errorf("uid %d: %w", cred.Uid, ErrPeerRefused)
	}
	return conn, PeerInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		UID:            int(cred.Uid), GID: int(cred.Gid), PID: int(cred.Pid),
	}, nil
}

func (c *peerCreds) ClientHandshake(_ context.Context, _ string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return conn, PeerInfo{}, nil
}

func (c *peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}

func (c *peerCreds) Clone() credentials.TransportCredentials {
	return &peerCreds{allowed: slices.Clone(c.allowed)}
}

func (c *peerCreds) OverrideServerName(string) error { return nil }

// IOBufferBytes is the size of the read and write buffers of gRPC's framer
// on the Unix sockets between services (Dial and ServerOptions), instead of
// gRPC's 32 KiB. Job output crosses two of these hops in messages of up to a
// MiB: at 32 KiB each message is dozens of read and write system calls and
// as many goroutine wake-ups on each side. The buffers are pooled while a
// connection is idle (SharedWriteBuffer, and gRPC's pooled reads on Unix
// sockets), so an idle connection holds neither.
const IOBufferBytes = 256 << 10

// ServerOptions are the gRPC server options for a service on a Unix socket:
// the buffers of IOBufferBytes.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ReadBufferSize(IOBufferBytes),
		grpc.WriteBufferSize(IOBufferBytes),
		grpc.SharedWriteBuffer(true),
	}
}

// Dial returns a client connection to the service listening at path. It does
// not block: calls fail with codes.Unavailable while the service is down and
// succeed once it is back. Its buffers are of IOBufferBytes, pooled while
// idle; opts come after these and may override them.
func Dial(path string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	opts = append([]grpc.DialOption{
		grpc.WithReadBufferSize(IOBufferBytes),
		grpc.WithWriteBufferSize(IOBufferBytes),
		grpc.WithSharedWriteBuffer(true),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}),
	}, opts...)
	cc, err := grpc.NewClient("passthrough:///"+path, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", path, err)
	}
	return cc, nil
}

// Package client connects rnx to a Joblet gateway over mutual TLS 1.3 and
// turns gRPC failures into one-line messages a user can act on.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/joblet-dev/joblet/proto/clientconfig"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/proto/transport"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
)

// The power-of-two buffer pool (see transport.InstallBufferPool): received
// log chunks of 32 KiB to 1 MiB would otherwise each take, and clear, a
// 1 MiB buffer. It is set in init, before any gRPC code runs, because the
// setting is process-wide.
func init() { transport.InstallBufferPool() }

// ConnectTimeout bounds one attempt to connect and complete the TLS
// handshake. gRPC connects lazily, so an unreachable gateway shows up as the
// first RPC's error, which Explain turns into a message.
const ConnectTimeout = 5 * time.Second

// maxRecvSize lets log chunks and long job lists through; the gateway bounds
// what it sends.
const maxRecvSize = 16 << 20

// recvWindow is the flow-control window rnx grants the gateway, per stream
// and per connection.
const recvWindow = 4 << 20

// reconnectBackoff paces reconnects after a lost connection: a CLI user is
// waiting, and a restarted gateway should be found again within seconds.
var reconnectBackoff = backoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second}

// Conn is a connection to one gateway, with the clients of its services.
type Conn struct {
	jobletv1.JobServiceClient
	jobletv1.NetworkServiceClient
	cc       *grpc.ClientConn
	address  string
	diag     *diagnosis
	sessions *SessionCache // nil without a session file
}

// Dial prepares a connection to node: TLS 1.3 at least, the node's client
// certificate, its CA as the only root, and the host part of its address as
// the name the server certificate must carry. With sessionFile set, the TLS
// session is resumed from that file when it holds one of this node's, and
// the new session is saved there (see SessionCache); "" makes a full
// handshake and saves nothing.
func Dial(node *clientconfig.Node, sessionFile string) (*Conn, error) {
	tlsConf, pair, err := tlsConfig(node)
	if err != nil {
		return nil, err
	}
	var sessions *SessionCache
	if sessionFile != "" {
		sessions = NewSessionCache(sessionFile, node)
		tlsConf.ClientSessionCache = sessions
	}
	d := &diagnosis{}
	cc, err := grpc.NewClient("passthrough:///"+node.Address,
		grpc.WithTransportCredentials(&recordingCreds{TransportCredentials: credentials.NewTLS(tlsConf), diag: d, sessions: sessions}),
		grpc.WithContextDialer(d.dial),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: reconnectBackoff, MinConnectTimeout: ConnectTimeout}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvSize), grpc.ForceCodecV2(Codec{})),
		// A log stream is the one large flow rnx receives: a window that
		// starts at 4 MiB (fixed, instead of gRPC's 64 KiB grown by its
		// bandwidth estimate) lets the gateway send without waiting for rnx's
		// window updates. It costs the gateway nothing: what is in flight is
		// held by the sockets and by rnx.
		grpc.WithInitialWindowSize(recvWindow), grpc.WithInitialConnWindowSize(recvWindow),
		// No read buffer of gRPC's own: TLS already holds each decrypted
		// record, and a second buffer was one more copy of every byte of a
		// log (0.1 CPU-s per GiB attached, bench/README.md session 8).
		grpc.WithReadBufferSize(0),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", node.Address, err)
	}
	// Connect now rather than at the first call: the TCP and TLS handshakes
	// (and the wait for the server's HTTP/2 settings) run while the key pair
	// is parsed and the command prepares its first request. Every command
	// that dials makes a call right after.
	cc.Connect()
	if err := pair.parse(node); err != nil {
		// As Close: the handshake under way may save a session (a
		// resumed one needs no key pair); nothing is written after Dial
		// has returned.
		cc.Close()
		if sessions != nil {
			sessions.Flush()
		}
		return nil, err
	}
	return &Conn{
		JobServiceClient:     jobletv1.NewJobServiceClient(cc),
		NetworkServiceClient: jobletv1.NewNetworkServiceClient(cc),
		cc:                   cc, address: node.Address, diag: d, sessions: sessions,
	}, nil
}

// TLSConfig is the client side of Joblet's mTLS for node.
func TLSConfig(node *clientconfig.Node) (*tls.Config, error) {
	c, pair, err := tlsConfig(node)
	if err != nil {
		return nil, err
	}
	if err := pair.parse(node); err != nil {
		return nil, err
	}
	return c, nil
}

// tlsConfig is TLSConfig without the client's key pair: the config hands
// it to a full handshake once keyPair.parse has run.
func tlsConfig(node *clientconfig.Node) (*tls.Config, *keyPair, error) {
	host, _, err := net.SplitHostPort(node.Address)
	if err != nil || host == "" {
		return nil, nil, fmt.Errorf("node address %q: want host:port, e.g. 127.0.0.1:50051", node.Address)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(node.CA)) {
		return nil, nil, errors.New("ca in the config holds no PEM certificate")
	}
	pair := &keyPair{done: make(chan struct{})}
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: pair.clientCertificate,
		RootCAs:              roots,
		ServerName:           host,
	}, pair, nil
}

// keyPair is the client certificate and key of the config, parsed (0.15
// to 0.2 ms of CPU: the certificate, the key, a check that they match)
// once the connection has started: only a full TLS handshake sends the
// certificate, and a resumed one, which most commands make (see
// SessionCache), never waits for it. Dial still fails as before on a bad
// pair.
type keyPair struct {
	done chan struct{}
	cert tls.Certificate
	err  error
}

// parse parses node's pair, once, and returns its error.
func (p *keyPair) parse(node *clientconfig.Node) error {
	defer close(p.done)
	p.cert, p.err = tls.X509KeyPair([]byte(node.Cert), []byte(node.Key))
	if p.err != nil {
		p.err = fmt.Errorf("client certificate and key in the config: %w", p.err)
	}
	return p.err
}

// get waits for parse and returns its result.
func (p *keyPair) get() (*tls.Certificate, error) {
	<-p.done
	return &p.cert, p.err
}

// clientCertificate is tls.Config.GetClientCertificate. It answers as
// crypto/tls does for a Certificates list of one: the certificate, or none
// at all if the server's request rules it out.
func (p *keyPair) clientCertificate(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
	cert, err := p.get()
	if err != nil {
		return nil, err
	}
	if cri.SupportsCertificate(cert) != nil {
		return new(tls.Certificate), nil
	}
	return cert, nil
}

// Address is the gateway address this connection goes to.
func (c *Conn) Address() string { return c.address }

// WasConnected reports whether a connection to the gateway has ever been
// made: an RPC that fails as unavailable after that is worth retrying, one
// that fails before is a wrong address or a suite that is not running.
func (c *Conn) WasConnected() bool {
	c.diag.mu.Lock()
	defer c.diag.mu.Unlock()
	return c.diag.connected
}

// Refused reports whether the server ended the latest connection after
// the TLS handshake without serving anything, as it does with a client
// certificate it does not accept: trying again cannot help.
func (c *Conn) Refused() bool { return errors.As(c.diag.get(), new(*refusedError)) }

// Close releases the connection, once the session it got is saved.
func (c *Conn) Close() error {
	err := c.cc.Close()
	if c.sessions != nil {
		c.sessions.Flush()
	}
	return err
}

// Leave ends the use of the connection by a process about to exit: it
// waits for the session being saved, as Close does, and leaves the
// connection itself to be closed by the kernel with the process. gRPC's
// orderly close (a GOAWAY frame, TLS's close_notify, its goroutines ended
// one by one) took ~0.3 ms at the end of every command; the gateway ends
// a connection that reaches EOF as it ends one closed in order.
func (c *Conn) Leave() {
	if c.sessions != nil {
		c.sessions.Flush()
	}
}

// dial is the TCP dialer; its failures are kept for Explain.
func (d *diagnosis) dial(ctx context.Context, addr string) (net.Conn, error) {
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, "tcp", addr)
	d.set(err)
	return conn, err
}

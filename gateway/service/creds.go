package service

import (
	"net"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/credentials"
)

// loggedCreds logs every refused TLS handshake: a certificate from another
// CA, an expired one, none at all or an old TLS version never reaches an
// interceptor, and gRPC itself would only mention it at a level that is off.
type loggedCreds struct {
	credentials.TransportCredentials
	log zerolog.Logger
}

// ServerHandshake implements credentials.TransportCredentials. The
// connection it returns writes TLS records in batches (tlsbatch.go).
func (c loggedCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	raw := &recordBatcher{Conn: conn}
	nc, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		c.log.Warn().Str("peer_addr", conn.RemoteAddr().String()).Err(err).Msg("TLS handshake refused")
		return nc, info, err
	}
	if tc, ok := conn.(*trackedConn); ok { // conns.go
		tc.handshaken()
	}
	return &batchedConn{Conn: nc, raw: raw}, info, nil
}

func (c loggedCreds) Clone() credentials.TransportCredentials {
	return loggedCreds{TransportCredentials: c.TransportCredentials.Clone(), log: c.log}
}

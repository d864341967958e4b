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

func (c loggedCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	nc, info, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		c.log.Warn().Str("peer_addr", conn.RemoteAddr().String()).Err(err).Msg("TLS handshake refused")
		return nc, info, err
	}
	if tc, ok := conn.(*trackedConn); ok { // conns.go
		tc.handshaken()
	}
	return nc, info, nil
}

func (c loggedCreds) Clone() credentials.TransportCredentials {
	return loggedCreds{TransportCredentials: c.TransportCredentials.Clone(), log: c.log}
}

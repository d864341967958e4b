package service

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/credentials"

	"github.com/joblet-dev/joblet/deploy/certs"
)

// countingConn counts the writes that reach the TCP connection.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// The connection loggedCreds returns carries exactly the bytes written, over
// real TLS on a loopback TCP connection, whatever the sizes of the writes,
// and a large write reaches the kernel in one or two writes instead of one
// per TLS record.
func TestTLSWritesBatched(t *testing.T) {
	ca, err := certs.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	srvPair, err := ca.Server("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := tls.X509KeyPair(srvPair.CertPEM, srvPair.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	sizes := []int{1, batchMin, batchMin + 1, 256 << 10, 3*batchMax + 12345, 7, 100 << 10}
	var want bytes.Buffer
	for i, n := range sizes {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(i*31 + j*7 + j>>13)
		}
		want.Write(b)
	}

	got := make(chan []byte, 1)
	go func() {
		c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}})
		if err != nil {
			t.Error(err)
			got <- nil
			return
		}
		defer c.Close()
		b, err := io.ReadAll(c)
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()

	raw, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	counted := &countingConn{Conn: raw}
	creds := loggedCreds{TransportCredentials: credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{srvCert}, MinVersion: tls.VersionTLS13}), log: zerolog.Nop()}
	conn, _, err := creds.ServerHandshake(counted)
	if err != nil {
		t.Fatal(err)
	}
	rest := want.Bytes()
	for _, n := range sizes {
		before := counted.writes.Load()
		if w, err := conn.Write(rest[:n]); err != nil || w != n {
			t.Fatalf("write of %d: %d, %v", n, w, err)
		}
		rest = rest[n:]
		writes := counted.writes.Load() - before
		records := int64((n + batchMin - 1) / batchMin)
		// A write above one record goes out in one kernel write per
		// batchMax gathered, plus one for what is left.
		if limit := int64(n/batchMax + 1); n > batchMin && writes > limit {
			t.Errorf("write of %d bytes (%d records): %d writes to the connection, want at most %d", n, records, writes, limit)
		}
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	b := <-got
	if !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("received %d bytes, not the %d written", len(b), want.Len())
	}
}

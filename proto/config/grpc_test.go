package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGRPCFromFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yml")
	yml := "grpc:\n  maxRecvMsgBytes: 1024\n  handshakeTimeout: 3s\n"
	if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultGRPC()
	want.MaxRecvMsgBytes, want.HandshakeTimeout = 1024, 3*time.Second
	if got := c.GRPC.WithDefaults(); got != want {
		t.Errorf("grpc from %q:\n got %+v\nwant %+v", yml, got, want)
	}
	// A config written before the section existed gets today's values.
	if got := (GRPC{}).WithDefaults(); got != DefaultGRPC() {
		t.Errorf("zero GRPC with defaults: %+v", got)
	}
}

func TestGRPCValidate(t *testing.T) {
	for _, tc := range []struct {
		mut  func(*GRPC)
		want string
	}{
		{func(g *GRPC) { g.MaxRecvMsgBytes = -1 }, "grpc.maxRecvMsgBytes -1"},
		{func(g *GRPC) { g.MaxRecvMsgBytes = 1 << 30 }, "grpc.maxRecvMsgBytes 1073741824: want 1 to 268435456"},
		{func(g *GRPC) { g.MaxConcurrentStreams = 1 << 20 }, "grpc.maxConcurrentStreams"},
		{func(g *GRPC) { g.MaxConnections = -5 }, "grpc.maxConnections -5"},
		{func(g *GRPC) { g.HandshakeTimeout = -time.Second }, "grpc.handshakeTimeout -1s is negative"},
		{func(g *GRPC) { g.PingTimeout = -1 }, "grpc.pingTimeout"},
	} {
		c := Default()
		tc.mut(&c.GRPC)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error with %q", c.GRPC, err, tc.want)
		}
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

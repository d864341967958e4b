package authz

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/joblet-dev/joblet/proto/errdefs"
)

func certWith(ous ...string) *x509.Certificate {
	return &x509.Certificate{Subject: pkix.Name{CommonName: "alice", OrganizationalUnit: ous}}
}

func TestRoleOf(t *testing.T) {
	for _, tc := range []struct {
		ous  []string
		role Role
		err  string
	}{
		{[]string{"admin"}, Admin, ""},
		{[]string{"viewer"}, Viewer, ""},
		{nil, "", "client certificate has no role (OU)"},
		{[]string{"admin", "viewer"}, "", "client certificate has more than one role (OU)"},
		{[]string{"admin", "admin"}, "", "more than one role"},
		{[]string{"Admin"}, "", `client certificate has an unknown role "Admin"`},
		{[]string{""}, "", `unknown role ""`},
		{[]string{strings.Repeat("x", 500)}, "", `"` + strings.Repeat("x", maxShownOU) + `..."`},
	} {
		r, err := RoleOf(certWith(tc.ous...))
		if tc.err == "" {
			if err != nil || r != tc.role {
				t.Errorf("%q: %q %v", tc.ous, r, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, errdefs.ErrUnauthenticated) {
			t.Errorf("%q: got %q %v, want Unauthenticated %q", tc.ous, r, err, tc.err)
		}
	}
}

func TestDenyByDefault(t *testing.T) {
	const unknown = "/joblet.v1.JobService/DeleteEverything"
	if HasRule(unknown) || Allowed(Admin, unknown) || Allowed(Viewer, unknown) {
		t.Fatal("a method missing from the table is allowed")
	}
	if Allowed(Role("root"), "/joblet.v1.JobService/ListJobs") {
		t.Fatal("an unknown role is allowed")
	}
}

// callCtx is the context of a call from a peer whose verified leaf is c (no
// TLS at all when c is nil).
func callCtx(c *x509.Certificate) context.Context {
	p := &peer.Peer{}
	if c != nil {
		p.AuthInfo = credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{c}}}}
	}
	return peer.NewContext(context.Background(), p)
}

func TestInterceptors(t *testing.T) {
	const list, run = "/joblet.v1.JobService/ListJobs", "/joblet.v1.JobService/RunJob"
	unary := UnaryInterceptor(zerolog.Nop(), nil)
	stream := StreamInterceptor(zerolog.Nop(), nil)
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		method string
		code   codes.Code
		msg    string
	}{
		{"admin runs", callCtx(certWith("admin")), run, codes.OK, ""},
		{"viewer lists", callCtx(certWith("viewer")), list, codes.OK, ""},
		{"viewer runs", callCtx(certWith("viewer")), run, codes.PermissionDenied, `permission denied: role "viewer" may not call RunJob`},
		{"admin, no rule", callCtx(certWith("admin")), "/joblet.v1.JobService/Nope", codes.PermissionDenied, `role "admin" may not call Nope`},
		{"no OU", callCtx(certWith()), list, codes.Unauthenticated, "no role (OU)"},
		{"no TLS", callCtx(nil), list, codes.Unauthenticated, "no verified client certificate"},
		{"no peer", context.Background(), list, codes.Unauthenticated, "no peer information"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ran := false
			_, err := unary(tc.ctx, nil, &grpc.UnaryServerInfo{FullMethod: tc.method}, func(ctx context.Context, _ any) (any, error) {
				ran = true
				return nil, nil
			})
			check(t, "unary", err, ran, tc.code, tc.msg)
			ran = false
			err = stream(nil, fakeStream{ctx: tc.ctx}, &grpc.StreamServerInfo{FullMethod: tc.method, IsServerStream: true}, func(any, grpc.ServerStream) error {
				ran = true
				return nil
			})
			check(t, "stream", err, ran, tc.code, tc.msg)
		})
	}
}

func check(t *testing.T, kind string, err error, ran bool, code codes.Code, msg string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || !strings.Contains(st.Message(), msg) {
		t.Errorf("%s: got %v %q, want %v %q", kind, st.Code(), st.Message(), code, msg)
	}
	if ran != (code == codes.OK) {
		t.Errorf("%s: handler ran = %v", kind, ran)
	}
}

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f fakeStream) Context() context.Context { return f.ctx }

// revList is a Revocations whose content the test changes.
type revList struct {
	mu      sync.Mutex
	revoked map[*x509.Certificate]bool
	changed chan struct{}
}

func newRevList() *revList {
	return &revList{revoked: map[*x509.Certificate]bool{}, changed: make(chan struct{})}
}

func (r *revList) Revoked(c *x509.Certificate) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.revoked[c]
}

func (r *revList) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

func (r *revList) set(c *x509.Certificate, revoked bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revoked[c] = revoked
	close(r.changed)
	r.changed = make(chan struct{})
}

// TestRevokedCertificate: a revoked certificate is refused on both kinds of
// call, and a stream running when its certificate is revoked is ended with
// Unauthenticated, while a stream of another certificate goes on.
func TestRevokedCertificate(t *testing.T) {
	const list, logs = "/joblet.v1.JobService/ListJobs", "/joblet.v1.JobService/GetJobLogs"
	rev := newRevList()
	gone, kept := certWith("viewer"), certWith("viewer")
	rev.set(gone, true)
	unary := UnaryInterceptor(zerolog.Nop(), rev)
	stream := StreamInterceptor(zerolog.Nop(), rev)
	_, err := unary(callCtx(gone), nil, &grpc.UnaryServerInfo{FullMethod: list}, func(context.Context, any) (any, error) {
		t.Error("handler ran for a revoked certificate")
		return nil, nil
	})
	check(t, "unary", err, false, codes.Unauthenticated, "client certificate has been revoked")
	err = stream(nil, fakeStream{ctx: callCtx(gone)}, &grpc.StreamServerInfo{FullMethod: logs}, func(any, grpc.ServerStream) error {
		t.Error("handler ran for a revoked certificate")
		return nil
	})
	check(t, "stream", err, false, codes.Unauthenticated, "client certificate has been revoked")

	// Two followers; only the one whose certificate is revoked is cut.
	rev.set(gone, false)
	follow := func(c *x509.Certificate, started chan<- struct{}) <-chan error {
		done := make(chan error, 1)
		ctx, cancel := context.WithCancel(callCtx(c))
		t.Cleanup(cancel)
		go func() {
			done <- stream(nil, fakeStream{ctx: ctx}, &grpc.StreamServerInfo{FullMethod: logs}, func(_ any, ss grpc.ServerStream) error {
				close(started)
				<-ss.Context().Done()
				return ss.Context().Err()
			})
		}()
		return done
	}
	s1, s2 := make(chan struct{}), make(chan struct{})
	cut, going := follow(gone, s1), follow(kept, s2)
	<-s1
	<-s2
	rev.set(kept, false) // a change that revokes nobody running
	rev.set(gone, true)
	select {
	case err := <-cut:
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), "revoked") {
			t.Fatalf("cut stream: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked certificate's stream still runs")
	}
	select {
	case err := <-going:
		t.Fatalf("the other certificate's stream ended: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
}

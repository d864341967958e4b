package client

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Explain turns an RPC error into a one-line message for the user. Errors
// the server chose (not found, permission denied with the role named,
// invalid argument, ...) keep the server's message, which the gateway
// builds to be safe and clear; transport failures are described from what
// the dialer and TLS saw. Errors that are not gRPC statuses pass through.
func (c *Conn) Explain(err error) error {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return err
	}
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable:
		if cause := c.diag.get(); cause != nil {
			return c.transportError(cause)
		}
		return fmt.Errorf("joblet at %s is unavailable: %s", c.address, msg)
	case codes.DeadlineExceeded:
		return fmt.Errorf("joblet at %s did not answer in time", c.address)
	case codes.Canceled:
		return context.Canceled
	case codes.Unauthenticated:
		return fmt.Errorf("joblet at %s refused the client certificate: %s", c.address, msg)
	case codes.Internal, codes.Unknown, codes.Unimplemented, codes.DataLoss:
		return fmt.Errorf("joblet at %s failed: %s", c.address, msg)
	}
	if msg == "" {
		msg = st.Code().String()
	}
	return &ServerError{Code: st.Code(), Msg: msg}
}

// ServerError is an error the server reported about the request itself.
type ServerError struct {
	Code codes.Code
	Msg  string
}

func (e *ServerError) Error() string { return e.Msg }

// transportError describes why the connection could not be made or kept.
func (c *Conn) transportError(cause error) error {
	var (
		dnsErr      *net.DNSError
		unknownCA   x509.UnknownAuthorityError
		wrongHost   x509.HostnameError
		invalidCert x509.CertificateInvalidError
		netErr      net.Error
	)
	reach := "cannot reach joblet at " + c.address
	verify := "cannot verify joblet at " + c.address
	switch {
	case errors.As(cause, new(*lostError)):
		return fmt.Errorf("lost the connection to joblet at %s", c.address)
	case errors.Is(cause, syscall.ECONNREFUSED):
		return fmt.Errorf("%s: connection refused — is the suite running? (make run)", reach)
	case errors.As(cause, &dnsErr):
		return fmt.Errorf("%s: unknown host %q", reach, dnsErr.Name)
	case errors.Is(cause, context.DeadlineExceeded), errors.Is(cause, os.ErrDeadlineExceeded),
		errors.As(cause, &netErr) && netErr.Timeout():
		return fmt.Errorf("%s: no answer within %s", reach, ConnectTimeout)
	case errors.As(cause, &unknownCA):
		return fmt.Errorf("%s: its certificate is not signed by the CA in your rnx config", verify)
	case errors.As(cause, &wrongHost):
		return fmt.Errorf("%s: its certificate is not valid for %q", verify, wrongHost.Host)
	case errors.As(cause, &invalidCert):
		return fmt.Errorf("%s: its certificate is invalid (%s)", verify, invalidReason(invalidCert.Reason))
	case errors.As(cause, new(*refusedError)):
		what := "closed the connection after the TLS handshake"
		var op *net.OpError
		if isRemoteAlert(cause) && errors.As(cause, &op) {
			what = fmt.Sprintf("refused the TLS connection (%v)", op.Err)
		}
		return fmt.Errorf("joblet at %s %s: check the client certificate in your rnx config (signed by the server's CA, not expired, with a role)", c.address, what)
	}
	return fmt.Errorf("%s: %v", reach, cause)
}

func invalidReason(r x509.InvalidReason) string {
	switch r {
	case x509.Expired:
		return "expired or not yet valid"
	case x509.IncompatibleUsage:
		return "not meant for a server"
	}
	return "rejected by the verifier"
}

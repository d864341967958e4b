// Package authz decides who may call what on the gateway: the caller's role
// comes from the verified client certificate's OU, and one table maps every
// RPC to the roles allowed to call it. Anything the table does not name is
// refused to everyone.
package authz

import (
	"crypto/x509"
	"slices"

	"github.com/joblet-dev/joblet/proto/errdefs"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// Role is what a client may do, as named in its certificate's OU.
type Role string

// The roles Joblet knows.
const (
	Admin  Role = "admin"
	Viewer Role = "viewer"
)

// rules is the one method→roles table. A method that is not here is refused
// for every role, so a new RPC stays closed until someone writes its rule.
var rules = map[string][]Role{
	jobletv1.JobService_RunJob_FullMethodName:       {Admin},
	jobletv1.JobService_StopJob_FullMethodName:      {Admin},
	jobletv1.JobService_GetJobStatus_FullMethodName: {Admin, Viewer},
	jobletv1.JobService_ListJobs_FullMethodName:     {Admin, Viewer},
	jobletv1.JobService_GetJobLogs_FullMethodName:   {Admin, Viewer},

	jobletv1.JobService_RunJobWithUploads_FullMethodName: {Admin},

	jobletv1.NetworkService_CreateNetwork_FullMethodName: {Admin},
	jobletv1.NetworkService_RemoveNetwork_FullMethodName: {Admin},
	jobletv1.NetworkService_ListNetworks_FullMethodName:  {Admin, Viewer},
}

// HasRule reports whether the table names fullMethod (e.g.
// "/joblet.v1.JobService/RunJob").
func HasRule(fullMethod string) bool {
	_, ok := rules[fullMethod]
	return ok
}

// Allowed reports whether role may call fullMethod.
func Allowed(role Role, fullMethod string) bool {
	return slices.Contains(rules[fullMethod], role)
}

// maxShownOU bounds how much of an unknown OU goes into an error message.
const maxShownOU = 64

// RoleOf returns the role named by a client certificate: its subject must
// have exactly one OU and that OU must be a known role. Anything else is an
// errdefs.ErrUnauthenticated error saying what is wrong.
func RoleOf(cert *x509.Certificate) (Role, error) {
	ous := cert.Subject.OrganizationalUnit
	switch {
	case len(ous) == 0:
		return "", errdefs.Errorf(errdefs.ErrUnauthenticated, "client certificate has no role (OU)")
	case len(ous) > 1:
		return "", errdefs.Errorf(errdefs.ErrUnauthenticated, "client certificate has more than one role (OU)")
	}
	switch r := Role(ous[0]); r {
	case Admin, Viewer:
		return r, nil
	}
	shown := ous[0]
	if len(shown) > maxShownOU {
		shown = shown[:maxShownOU] + "..."
	}
	return "", errdefs.Errorf(errdefs.ErrUnauthenticated, "client certificate has an unknown role %q", shown)
}

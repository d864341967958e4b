package client

import (
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
)

// Warm sets up, in the background, what the protobuf runtime builds at the
// first use of a message type, for the requests and answers of methods
// (full gRPC method names, such as jobletv1.JobService_GetJobStatus_FullMethodName)
// and every message they contain. That set-up (the API's file descriptor
// decoded in full, each type's coder and reflection tables) takes 0.3 to
// 0.6 ms of CPU and would otherwise run on a command's critical path, when
// its first request is encoded and its first answer decoded. Called before
// the config is read, it runs on an otherwise idle CPU while rnx reads the
// config and waits for the TCP and TLS handshakes. The runtime guards each
// type's set-up with its own lock: a message needed before its set-up here
// has finished waits for it, or does it. A type already set up costs
// nothing more.
func Warm(methods ...string) {
	go warmMethods(jobletv1.File_joblet_v1_joblet_proto, methods)
}

// warmMethods sets up the messages of fd's methods named in methods, in
// that order, and returns their names in the order they were set up.
func warmMethods(fd protoreflect.FileDescriptor, methods []string) []protoreflect.FullName {
	var (
		names []protoreflect.FullName
		seen  = map[protoreflect.FullName]bool{}
		visit func(protoreflect.MessageDescriptor)
	)
	visit = func(md protoreflect.MessageDescriptor) {
		if md == nil || seen[md.FullName()] {
			return
		}
		seen[md.FullName()] = true
		// A map's entry has no Go type of its own; its fields are visited
		// all the same.
		if mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName()); err == nil {
			// Size on an empty message runs the type's whole set-up (the
			// tables Marshal and Unmarshal use) and encodes nothing.
			proto.Size(mt.New().Interface())
			names = append(names, md.FullName())
		}
		fields := md.Fields()
		for i := range fields.Len() {
			visit(fields.Get(i).Message())
		}
	}
	for _, m := range methods {
		if md := findMethod(fd, m); md != nil {
			visit(md.Input())
			visit(md.Output())
		}
	}
	return names
}

// findMethod returns the method of fd named by a full gRPC method name
// ("/package.Service/Method"), or nil.
func findMethod(fd protoreflect.FileDescriptor, fullMethod string) protoreflect.MethodDescriptor {
	service, method, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok {
		return nil
	}
	services := fd.Services()
	for i := range services.Len() {
		if sd := services.Get(i); string(sd.FullName()) == service {
			return sd.Methods().ByName(protoreflect.Name(method))
		}
	}
	return nil
}

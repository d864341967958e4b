// Package integration holds the cgroup package's root tests against the real
// kernel: limits written and enforced, usage counted, jobs killed, nothing
// left behind. They live apart from the fake-cgroupfs unit tests, which
// switch the library into test mode. Without root they skip.
package integration

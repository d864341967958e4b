//go:build race

package sandbox

// A race-enabled binary sleeps a second at exit by default; the job's init
// should end with its command.
func init() { initEnv = []string{"GORACE=atexit_sleep_ms=0"} }

package daemon

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// EnvPprofDir, when set, makes every daemon profile itself (development
// only): a CPU profile of its whole run, written as
// cpu-<service>-<pid>.pprof when it stops, and a heap profile
// heap-<service>-<pid>-<time>.pprof when it stops and on each SIGUSR1, with
// the runtime's memory classes beside it (mem-<service>-<pid>-<time>.txt:
// where the RSS that is not live heap goes, e.g. stacks, metadata). The
// directory must exist and be writable by every service (the gateway runs
// unprivileged). Read them with `go tool pprof`.
const EnvPprofDir = "JOBLET_PPROF_DIR"

// Without EnvPprofDir nothing reads a heap profile, yet the runtime
// samples one allocation per 512 KiB by default: it unwinds the stack
// (touching the binary's function tables), and keeps each new stack in a
// bucket found through a 1.4 MiB hash table, one page of which becomes
// resident per new stack. A burst of work through code paths the rest did
// not take left every daemon with more of both, for good. So the daemons
// (every main that links this package) do not sample unless profiling.
// It is set in init, before main, as runtime.MemProfileRate asks.
func init() {
	if os.Getenv(EnvPprofDir) == "" {
		runtime.MemProfileRate = 0
	}
}

// profiler is a daemon's self-profiling, started by startProfiling.
type profiler struct {
	dir, name string
	log       zerolog.Logger
	cpu       *os.File
	sigs      chan os.Signal
	done      chan struct{}
	wg        sync.WaitGroup
}

// startProfiling starts profiling when EnvPprofDir is set; the returned
// stop writes the profiles. Without it, stop does nothing.
func startProfiling(name string, log zerolog.Logger) (stop func()) {
	dir := os.Getenv(EnvPprofDir)
	if dir == "" {
		return func() {}
	}
	p := &profiler{dir: dir, name: name, log: log, sigs: make(chan os.Signal, 1), done: make(chan struct{})}
	f, err := os.Create(p.path("cpu", ""))
	if err == nil {
		if err = pprof.StartCPUProfile(f); err != nil {
			f.Close()
		} else {
			p.cpu = f
		}
	}
	if err != nil {
		log.Warn().Err(err).Msg("no CPU profile")
	}
	signal.Notify(p.sigs, syscall.SIGUSR1)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			select {
			case <-p.sigs:
				p.writeHeap()
			case <-p.done:
				return
			}
		}
	}()
	log.Info().Str("dir", dir).Msg("profiling: CPU until stopped, heap on SIGUSR1 and at stop")
	return p.stop
}

func (p *profiler) path(kind, suffix string) string {
	return filepath.Join(p.dir, fmt.Sprintf("%s-%s-%d%s.pprof", kind, p.name, os.Getpid(), suffix))
}

// writeHeap writes a heap profile of the live objects after a collection,
// so it shows what is retained rather than garbage not yet collected.
func (p *profiler) writeHeap() {
	runtime.GC()
	name := p.path("heap", "-"+time.Now().UTC().Format("150405.000"))
	f, err := os.Create(name)
	if err == nil {
		err = pprof.WriteHeapProfile(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		p.log.Warn().Err(err).Msg("no heap profile")
		return
	}
	p.log.Info().Str("file", name).Msg("heap profile written")
	if err := p.writeMemClasses(strings.TrimSuffix(strings.Replace(name, "heap-", "mem-", 1), ".pprof") + ".txt"); err != nil {
		p.log.Warn().Err(err).Msg("no memory classes")
	}
}

// writeMemClasses writes the runtime's memory classes and a few counts, one
// "name value" per line.
func (p *profiler) writeMemClasses(name string) error {
	var samples []metrics.Sample
	for _, d := range metrics.All() {
		if d.Kind == metrics.KindUint64 && (strings.HasPrefix(d.Name, "/memory/classes/") ||
			d.Name == "/sched/goroutines:goroutines" || d.Name == "/gc/heap/objects:objects") {
			samples = append(samples, metrics.Sample{Name: d.Name})
		}
	}
	metrics.Read(samples)
	var b strings.Builder
	for _, s := range samples {
		fmt.Fprintf(&b, "%s %d\n", s.Name, s.Value.Uint64())
	}
	if n, err := os.ReadDir("/proc/self/task"); err == nil {
		fmt.Fprintf(&b, "threads %d\n", len(n))
	}
	return os.WriteFile(name, []byte(b.String()), 0o644)
}

func (p *profiler) stop() {
	signal.Stop(p.sigs)
	close(p.done)
	p.wg.Wait()
	if p.cpu != nil {
		pprof.StopCPUProfile()
		if err := p.cpu.Close(); err != nil {
			p.log.Warn().Err(err).Msg("CPU profile")
		}
	}
	p.writeHeap()
}

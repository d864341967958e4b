// Package suite starts a private Joblet suite (bin/joblet in a temporary dev
// dir, on a free port), connects to its gateway with the admin client
// config, finds its service processes, and stops it with SIGTERM, listing
// anything it left behind.
package suite

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/joblet-dev/joblet/proto/clientconfig"
	"github.com/joblet-dev/joblet/proto/config"
	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

const (
	readyTimeout    = 60 * time.Second
	shutdownTimeout = 30 * time.Second
	// stopGrace is short: the benchmark stops only jobs that die on SIGTERM.
	stopGrace = 2 * time.Second
)

// Suite is a running bin/joblet.
type Suite struct {
	BinDir string
	DevDir string
	Port   int
	Log    string // the supervisor's stdout and stderr
	// KeepLog keeps Log after a clean stop, for a run that saw failures.
	KeepLog bool

	cmd    *exec.Cmd
	exited chan struct{}

	mu       sync.Mutex
	seenPIDs map[int]string // every process of the suite seen, for the leak check
}

// Start runs binDir/joblet in a fresh dev dir and waits for its ready line.
func Start(binDir string) (*Suite, error) {
	devDir, err := os.MkdirTemp("/tmp", "joblet-bench-")
	if err != nil {
		return nil, fmt.Errorf("dev dir: %w", err)
	}
	// The gateway runs as another user and must traverse the dev dir.
	if err := os.Chmod(devDir, 0o755); err != nil {
		os.RemoveAll(devDir)
		return nil, fmt.Errorf("dev dir: %w", err)
	}
	logFile, err := os.Create(devDir + ".log")
	if err != nil {
		os.RemoveAll(devDir)
		return nil, fmt.Errorf("suite log: %w", err)
	}
	// Before the suite ran, its dev dir and log hold nothing to look at.
	discard := func() {
		logFile.Close()
		os.Remove(logFile.Name())
		os.RemoveAll(devDir)
	}
	port, err := freePort()
	if err != nil {
		discard()
		return nil, err
	}
	s := &Suite{BinDir: binDir, DevDir: devDir, Port: port, Log: logFile.Name(), exited: make(chan struct{}), seenPIDs: map[int]string{}}
	cmd := exec.Command(filepath.Join(binDir, "joblet"))
	cmd.Env = append(os.Environ(),
		"JOBLET_DEV_DIR="+devDir,
		"JOBLET_PORT="+strconv.Itoa(port),
		"JOBLET_STOP_GRACE="+stopGrace.String(),
	)
	cmd.Stderr = logFile
	// If the benchmark dies without its teardown, the suite still goes away.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		discard()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		discard()
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	s.cmd = cmd
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			fmt.Fprintf(logFile, "[stdout] %s\n", sc.Text())
			if !signalled && strings.Contains(sc.Text(), "ready") {
				signalled = true
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	select {
	case <-ready:
	case <-s.exited:
		return nil, fmt.Errorf("bin/joblet exited before it was ready (%v); see %s", cmd.ProcessState, s.Log)
	case <-time.After(readyTimeout):
		_ = cmd.Process.Kill()
		<-s.exited
		return nil, fmt.Errorf("bin/joblet printed no ready line within %v; see %s", readyTimeout, s.Log)
	}
	if _, err := s.Pids(); err != nil {
		s.Stop(nil)
		return nil, fmt.Errorf("ready, but: %w", err)
	}
	return s, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// AdminConfig is the rnx config with the admin client certificate.
func (s *Suite) AdminConfig() string { return filepath.Join(s.DevDir, "rnx-admin.yml") }

// Pids reads state/supervisor/pids.json: service name → pid, the
// supervisor itself included as "supervisor".
func (s *Suite) Pids() (map[string]int, error) {
	b, err := os.ReadFile(filepath.Join(s.DevDir, "state", "supervisor", "pids.json"))
	if err != nil {
		return nil, fmt.Errorf("pids.json: %w", err)
	}
	var m map[string]int
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("pids.json %q: %w", b, err)
	}
	for _, name := range []string{"gateway", "isolator", "logd"} {
		if m[name] <= 0 {
			return nil, fmt.Errorf("pids.json %q: no pid for %s", b, name)
		}
	}
	m["supervisor"] = s.cmd.Process.Pid
	s.Remember(m)
	return m, nil
}

// Remember adds processes to those that must be gone after Stop.
func (s *Suite) Remember(pids map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, pid := range pids {
		s.seenPIDs[pid] = name
	}
}

// Dial connects to the gateway over mTLS with the admin client config,
// as rnx does.
func (s *Suite) Dial() (*grpc.ClientConn, error) {
	cfg, err := clientconfig.Load(s.AdminConfig())
	if err != nil {
		return nil, err
	}
	node, err := cfg.Node("")
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair([]byte(node.Cert), []byte(node.Key))
	if err != nil {
		return nil, fmt.Errorf("admin certificate: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(node.CA)) {
		return nil, errors.New("admin config: no CA certificate")
	}
	host, _, err := net.SplitHostPort(node.Address)
	if err != nil {
		return nil, fmt.Errorf("admin config address: %w", err)
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: host}
	cc, err := grpc.NewClient("passthrough:///"+node.Address,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConf)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", node.Address, err)
	}
	// Connect now, so the first measured call does not pay the handshake.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := jobletv1.NewJobServiceClient(cc).ListJobs(ctx, &jobletv1.ListJobsRequest{}); err != nil {
		cc.Close()
		return nil, fmt.Errorf("first call to the gateway: %w", err)
	}
	return cc, nil
}

// MaxRunningJobs is the suite's cap on jobs running at once
// (joblet.maxConcurrentJobs), 0 for none.
func (s *Suite) MaxRunningJobs() (int, error) {
	cfg, err := config.Load(filepath.Join(s.DevDir, "joblet-config.yml"))
	if err != nil {
		return 0, err
	}
	return cfg.Joblet.MaxConcurrentJobs, nil
}

// JobCgroupParents are the isolator's parent cgroups of the suite's jobs
// (one per v1 hierarchy, or one in the v2 tree) that exist now: the
// directories named joblet-<12 hex digits of sha256(state dir)> under the
// isolator's own cgroups.
func (s *Suite) JobCgroupParents() ([]string, error) {
	pids, err := s.Pids()
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(filepath.Join(s.DevDir, "joblet-config.yml"))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(cfg.Paths.StateDir))
	name := "joblet-" + hex.EncodeToString(sum[:])[:12]
	bases, err := cgroupDirs(pids["isolator"])
	if err != nil {
		return nil, err
	}
	var out []string
	for _, b := range bases {
		d := filepath.Join(b, name)
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			out = append(out, d)
		}
	}
	return out, nil
}

// Stop SIGTERMs the supervisor and lists what it left behind: processes
// (the suite's, and any other in this namespace), mounts under the dev
// dir, and the job cgroup parents given. The dev dir is removed when
// nothing is mounted in it.
func (s *Suite) Stop(cgroupParents []string) []string {
	var problems []string
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		if st := s.cmd.ProcessState; st != nil && !st.Success() {
			problems = append(problems, fmt.Sprintf("bin/joblet exited with %v after SIGTERM", st))
		}
	case <-time.After(shutdownTimeout):
		problems = append(problems, fmt.Sprintf("bin/joblet still running %v after SIGTERM; killed", shutdownTimeout))
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		alive := s.leftovers()
		if len(alive) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for pid, what := range alive {
				problems = append(problems, fmt.Sprintf("process still alive: pid %d (%s)", pid, what))
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, d := range cgroupParents {
		if _, err := os.Stat(d); err == nil {
			problems = append(problems, "job cgroup parent left behind: "+d)
		}
	}
	mounts, err := mountsMentioning(s.DevDir)
	if err != nil {
		problems = append(problems, err.Error())
	}
	for _, m := range mounts {
		problems = append(problems, "mount left behind: "+m)
	}
	if err == nil && len(mounts) == 0 {
		if err := os.RemoveAll(s.DevDir); err != nil {
			problems = append(problems, fmt.Sprintf("remove dev dir: %v", err))
		}
		if len(problems) == 0 && !s.KeepLog {
			_ = os.Remove(s.Log)
		}
	} else {
		// Removing a tree with live bind mounts in it could delete host files.
		problems = append(problems, "dev dir kept because of the mounts above: "+s.DevDir)
	}
	return problems
}

// leftovers maps the pids of live processes that should be gone to what
// they are: every suite process seen, every process running one of the
// suite's binaries with the dev dir in its command line or environment,
// and every process in this private network or mount namespace but us.
func (s *Suite) leftovers() map[int]string {
	out := map[int]string{}
	s.mu.Lock()
	for pid, name := range s.seenPIDs {
		if alive(pid) {
			out[pid] = name
		}
	}
	s.mu.Unlock()
	self := os.Getpid()
	ownNet, _ := os.Readlink("/proc/self/ns/net")
	ownMnt, _ := os.Readlink("/proc/self/ns/mnt")
	for _, pid := range allPIDs() {
		if pid == self || !alive(pid) {
			continue
		}
		dir := "/proc/" + strconv.Itoa(pid)
		if n, _ := os.Readlink(dir + "/ns/net"); n == ownNet {
			out[pid] = "in the benchmark's network namespace: " + comm(pid)
			continue
		}
		if m, _ := os.Readlink(dir + "/ns/mnt"); m == ownMnt {
			out[pid] = "in the benchmark's mount namespace: " + comm(pid)
			continue
		}
		exe, err := os.Readlink(dir + "/exe")
		if err != nil || !strings.HasPrefix(exe, s.BinDir+string(os.PathSeparator)) {
			continue
		}
		cmdline, _ := os.ReadFile(dir + "/cmdline")
		environ, _ := os.ReadFile(dir + "/environ")
		if strings.Contains(string(cmdline), s.DevDir) || strings.Contains(string(environ), s.DevDir) {
			out[pid] = exe
		}
	}
	return out
}

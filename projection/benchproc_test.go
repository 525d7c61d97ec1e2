package projection

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/sqlite"
	"github.com/eventline/eventline/redisurl"
)

// The multi-process benchmarks run this test binary again as projector
// processes: envBenchChild holds the child's benchChildArgs as JSON. A child
// reads commands from its stdin, one a line: "go" opens a gated log (and
// starts the CPU profile), "stop" or the end of stdin stops the runner and
// the child exits. SIGTERM stops it cleanly too (its leases are released);
// SIGKILL is a crash.
const envBenchChild = "EVENTLINE_PROJECTION_BENCH_CHILD"

// benchChildArgs configure one projector process of a benchmark.
type benchChildArgs struct {
	// DB is the SQLite log every process reads.
	DB string `json:"db"`
	// URL is the Redis server or cluster (redisurl).
	URL        string `json:"url"`
	Name       string `json:"name"`
	ID         string `json:"id"`
	Partitions int    `json:"partitions"`
	// Model is "hset" (hsetProjection, the catch-up benchmark) or "counts"
	// (pcounts, the failover benchmark).
	Model     string        `json:"model"`
	BatchSize int           `json:"batch_size"`
	LeaseTTL  time.Duration `json:"lease_ttl"`
	// Gated makes the log look empty (Head at Start, subscriptions held)
	// until "go", so that the runners settle their partitions first.
	Gated bool `json:"gated"`
	// CPUProfile, when set, is the file of a CPU profile taken from "go"
	// until the runner stops.
	CPUProfile string `json:"cpu_profile"`
}

// benchChild is a projector process of a benchmark: one Runner, its own
// Redis client, the SQLite log read through one eventstore.SharedLog (so
// that the process' partition runners share one reading of the log, as the
// sample's projector role does).
func benchChild() int {
	var a benchChildArgs
	if err := json.Unmarshal([]byte(os.Getenv(envBenchChild)), &a); err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	store, err := sqlite.Open(ctx, sqlite.Config{Path: a.DB, PollInterval: 2 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		return 2
	}
	defer store.Close()
	var log eventstore.Store = store
	var gate *gatedStore
	if a.Gated {
		gate = &gatedStore{Store: store, open: make(chan struct{})}
		log = gate
	}
	rdb, err := redisurl.Open(a.URL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		return 2
	}
	defer rdb.Close()
	var proj Projection
	switch a.Model {
	case "hset":
		proj = Partitioned(hsetProjection(a.Name), a.Partitions, nil)
	case "counts":
		proj = pcounts(a.Name, a.Partitions)
	default:
		fmt.Fprintf(os.Stderr, "bench child: unknown model %q\n", a.Model)
		return 2
	}
	r, err := NewRunner(Config{Store: eventstore.NewSharedLog(log, eventstore.SharedLogOptions{}), Redis: rdb,
		Projection: proj, ID: a.ID, BatchSize: a.BatchSize, LeaseTTL: a.LeaseTTL, Logger: quietLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		return 2
	}
	profiling := false
	defer func() {
		if profiling {
			pprof.StopCPUProfile()
		}
	}()
	commands := make(chan string)
	go func() {
		defer close(commands)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			commands <- sc.Text()
		}
	}()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	for {
		select {
		case err := <-done:
			if ctx.Err() == nil {
				fmt.Fprintln(os.Stderr, "bench child:", err)
				return 1
			}
			return 0
		case c, ok := <-commands:
			switch {
			case !ok || c == "stop":
				cancel()
				commands = nil
			case c == "go":
				if a.CPUProfile != "" && !profiling {
					f, err := os.Create(a.CPUProfile)
					if err == nil {
						err = pprof.StartCPUProfile(f)
					}
					if err != nil {
						fmt.Fprintln(os.Stderr, "bench child: cpu profile:", err)
						return 2
					}
					profiling = true
				}
				if gate != nil {
					gate.openOnce()
				}
			}
		}
	}
}

// gatedStore is a log that looks empty until open is closed: Head is Start
// and reads wait.
type gatedStore struct {
	eventstore.Store
	open   chan struct{}
	opened bool
}

func (s *gatedStore) openOnce() {
	if !s.opened {
		s.opened = true
		close(s.open)
	}
}

func (s *gatedStore) isOpen() bool {
	select {
	case <-s.open:
		return true
	default:
		return false
	}
}

func (s *gatedStore) Head(ctx context.Context) (eventstore.Position, error) {
	if !s.isOpen() {
		return eventstore.Start, nil
	}
	return s.Store.Head(ctx)
}

func (s *gatedStore) wait(ctx context.Context) error {
	select {
	case <-s.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *gatedStore) ReadAll(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		if err := s.wait(ctx); err != nil {
			yield(eventstore.Record{}, err)
			return
		}
		for rec, err := range s.Store.ReadAll(ctx, after) {
			if !yield(rec, err) {
				return
			}
		}
	}
}

func (s *gatedStore) Subscribe(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		if err := s.wait(ctx); err != nil {
			yield(eventstore.Record{}, err)
			return
		}
		for rec, err := range s.Store.Subscribe(ctx, after) {
			if !yield(rec, err) {
				return
			}
		}
	}
}

// benchProc is a projector process started by a benchmark.
type benchProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr bytes.Buffer
	done   chan struct{}
	err    error
}

// startBenchProc starts this test binary as a projector process with a; it
// is killed when the benchmark ends, if still running.
func startBenchProc(b testing.TB, a benchChildArgs) *benchProc {
	b.Helper()
	arg, err := json.Marshal(a)
	if err != nil {
		b.Fatal(err)
	}
	p := &benchProc{cmd: exec.Command(os.Args[0], "-test.run=^$"), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), envBenchChild+"="+string(arg))
	p.cmd.Stderr = &p.stderr
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	b.Cleanup(func() { p.kill() })
	return p
}

// send writes one command line to the process.
func (p *benchProc) send(b testing.TB, command string) {
	b.Helper()
	if _, err := io.WriteString(p.stdin, command+"\n"); err != nil {
		b.Fatalf("bench child %s: %v; stderr: %s", command, err, p.stderr.String())
	}
}

// stop asks the process to stop and waits (bounded) until it exited.
func (p *benchProc) stop(b testing.TB) {
	b.Helper()
	_, _ = io.WriteString(p.stdin, "stop\n")
	_ = p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.kill()
		b.Fatalf("bench child did not stop within 30s; stderr: %s", p.stderr.String())
	}
	if p.err != nil {
		b.Fatalf("bench child: %v; stderr: %s", p.err, p.stderr.String())
	}
}

// signal sends sig and waits (bounded) until the process exited.
func (p *benchProc) signal(b testing.TB, sig os.Signal) {
	b.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		b.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.kill()
		b.Fatalf("bench child still running 30s after %v; stderr: %s", sig, p.stderr.String())
	}
}

// kill SIGKILLs the process if it is still running and waits for it.
func (p *benchProc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// writeBenchLog writes a SQLite log of n records at path, the catch-up
// benchmarks' log: records of type "inc" without data over 1,000 streams,
// appended 50 to a stream at a time (so the partitions' records interleave
// in runs of 50).
func writeBenchLog(b testing.TB, path string, n int) {
	b.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, sqlite.Config{Path: path, Sync: sqlite.SyncNormal})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	const run = 50
	events := make([]eventstore.Event, run)
	for i := 0; i < n; i += run {
		k := min(run, n-i)
		for j := range k {
			events[j] = eventstore.Event{Type: "inc"}
		}
		if _, err := store.Append(ctx, "s-"+strconv.Itoa((i/run)%1000), eventstore.Any, events[:k]...); err != nil {
			b.Fatal(err)
		}
	}
}

// benchProfile returns the CPU profile file of process id in a run, or ""
// when EVENTLINE_BENCH_CPUPROFILE_DIR is not set.
func benchProfile(run, id string) string {
	dir := os.Getenv("EVENTLINE_BENCH_CPUPROFILE_DIR")
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, run+"-"+id+".pprof")
}

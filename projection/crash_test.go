package projection

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/sqlite"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// Environment of the child role of the crash test: the test binary re-runs
// itself as a projection runner process.
const (
	envChild     = "EVENTLINE_PROJECTION_CRASH_CHILD"
	envChildDB   = "EVENTLINE_PROJECTION_CRASH_DB"
	envChildAddr = "EVENTLINE_PROJECTION_CRASH_REDIS"
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		os.Exit(crashChild())
	}
	if os.Getenv(envPartChild) != "" {
		os.Exit(partChild())
	}
	if os.Getenv(envBenchChild) != "" {
		os.Exit(benchChild())
	}
	if os.Getenv(envRebuildChild) == "1" {
		os.Exit(rebuildChild())
	}
	os.Exit(m.Run())
}

// crashChild runs the counts projection over the SQLite log until killed.
func crashChild() int {
	ctx := context.Background()
	store, err := sqlite.Open(ctx, sqlite.Config{Path: os.Getenv(envChildDB), PollInterval: 2 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv(envChildAddr)})
	// A fixed id: the restarted process reclaims its own lease at once, as a
	// restarted pod with a stable name does. Only one child lives at a time.
	r, err := NewRunner(Config{Store: store, Redis: rdb, Projection: counts("c"), ID: "crash-child", BatchSize: 100,
		LeaseTTL: 2 * time.Second, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	if err := r.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

func TestCrashRunnerProcess(t *testing.T)  { crashTest(t, false) }
func TestCrashRunnerAndRedis(t *testing.T) { crashTest(t, true) }

// crashTest kills a runner process with SIGKILL at random moments, 12 times
// (48 with EVENTLINE_TEST_LONG set, for a deliberate long run), while events
// are appended; with killRedis, Redis (persistent) is killed and restarted
// too, every third round. Each round starts a -race test binary, which is
// most of its cost on a busy machine. The final model must equal,
// key for key and value for value, a model built in one uninterrupted run.
func crashTest(t *testing.T, killRedis bool) {
	srv := redistest.StartWith(t, redistest.Options{Persistent: true})
	if srv.Kind != redistest.KindProcess {
		t.Fatalf("the crash test needs a private redis-server, got %s", srv.Kind)
	}
	rdb := srv.Client(t)
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "events.db")
	store, err := sqlite.Open(ctx, sqlite.Config{Path: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })

	// Appender: single events, as fast as SQLite takes them, with a short
	// pause so that the log grows during the whole run rather than in a burst.
	var appended atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	appendErr := make(chan error, 1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := store.Append(ctx, streamOf(i), eventstore.Any, event(i)); err != nil {
				appendErr <- err
				return
			}
			appended.Add(1)
			if i%20 == 19 {
				time.Sleep(time.Millisecond) // pacing, not synchronisation
			}
		}
	}()

	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envChild+"=1", envChildDB+"="+db, envChildAddr+"="+srv.Addr)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	kill := func(cmd *exec.Cmd) {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills := 12
	if os.Getenv("EVENTLINE_TEST_LONG") != "" {
		kills = 48
	}
	// waitProgress waits until the child has committed a batch since from,
	// so that the kill that follows lands while it is working.
	waitProgress := func(from eventstore.Position) {
		waitUntil(t, 30*time.Second, "the child to commit a batch", func() bool { return checkpointOf(rdb, "c") != from })
	}
	randomMoment := func() { time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond) }
	for round := range kills {
		cmd := start()
		waitProgress(checkpointOf(rdb, "c"))
		randomMoment()
		if killRedis && round%3 == 2 {
			srv.Kill()
			randomMoment()
			srv.Restart()
			waitProgress(checkpointOf(rdb, "c"))
			randomMoment()
		}
		kill(cmd)
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-appendErr:
		t.Fatal(err)
	default:
	}
	n := int(appended.Load())
	head, err := store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d SIGKILLs of a working runner, %d events, checkpoint before the last run %s",
		kills, n, checkpointOf(rdb, "c"))

	last := start()
	waitFor(t, rdb, "c", head)
	kill(last)
	got := dumpModel(t, rdb, "c")

	// Reference: one uninterrupted run into a fresh Redis.
	ref := redistest.Start(t)
	refc := ref.Client(t)
	r := newRunner(t, Config{Store: store, Redis: refc, Projection: counts("c")})
	startRunner(t, r)
	waitFor(t, refc, "c", head)
	want := dumpModel(t, refc, "c")
	if d := diffModels(want, got); d != "" {
		t.Fatalf("model after crashes differs from the uninterrupted build:\n%s", d)
	}
	if d := diffModels(expected("c", n), want); d != "" {
		t.Fatalf("uninterrupted build differs from the model computed in Go:\n%s", d)
	}
	if len(want) == 0 {
		t.Fatal("empty model")
	}
}

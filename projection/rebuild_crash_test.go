package projection

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/sqlite"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

// envRebuildChild makes the test binary a process running Rebuild of tally
// v2 (see TestMain); it shares envChildDB and envChildAddr with the runner
// crash test.
const (
	envRebuildChild = "EVENTLINE_PROJECTION_REBUILD_CHILD"
	envRebuildBatch = "EVENTLINE_PROJECTION_REBUILD_BATCH"
)

func rebuildChild() int {
	ctx := context.Background()
	store, err := sqlite.Open(ctx, sqlite.Config{Path: os.Getenv(envChildDB), PollInterval: 2 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	defer store.Close()
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv(envChildAddr)})
	defer rdb.Close()
	// Small batches (until the last run) and a fixed id: the restarted
	// process reclaims its lease at once and is killed often in the middle of
	// the catch-up.
	batch, _ := strconv.Atoi(os.Getenv(envRebuildBatch))
	_, err = Rebuild(ctx, Config{Store: store, Redis: rdb, Projection: tally("p", 2), ID: "rebuild-child",
		BatchSize: max(batch, 50), LeaseTTL: 2 * time.Second, RetireDelay: 10 * time.Millisecond, Logger: quietLogger(),
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}, RebuildOptions{ProgressEvery: 5 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

// TestCrashDuringRebuild kills a process running a rebuild with SIGKILL at
// random moments while the live version serves and events are appended, then
// lets a last run finish. The switch must complete, the old version must be
// gone and the new model must equal a from-scratch build.
func TestCrashDuringRebuild(t *testing.T) {
	srv := redistest.StartWith(t, redistest.Options{})
	if srv.Kind != redistest.KindProcess {
		t.Fatalf("the crash test needs a private redis-server, got %s", srv.Kind)
	}
	rdb := srv.Client(t)
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "events.db")
	store, err := sqlite.Open(ctx, sqlite.Config{Path: db, PollInterval: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	var head eventstore.Position
	for i := 0; i < 12_000; i += 500 {
		evs := make([]eventstore.Event, 500)
		for j := range evs {
			evs[j] = eventstore.Event{Type: "t"}
		}
		res, err := store.Append(ctx, streamOf(i/500), eventstore.Any, evs...)
		if err != nil {
			t.Fatal(err)
		}
		head = res.Position
	}
	x1 := startRunner(t, newRunner(t, Config{Store: store, Redis: rdb, Projection: tally("p", 1), Logger: quietLogger()}))
	waitFor(t, rdb, "p", head)
	app := startAppender(t, store, 12_000)

	start := func(batch int) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envRebuildChild+"=1", envChildDB+"="+db, envChildAddr+"="+srv.Addr,
			envRebuildBatch+"="+strconv.Itoa(batch))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	v2cp := func() eventstore.Position {
		p, _ := query.ReadCheckpoint(ctx, rdb, "p", query.Version(2))
		return p
	}
	active := func() int { a, _ := activeBuild(ctx, rdb, "p"); return a.Version }
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	kills := 0
	for range 6 {
		if active() == 2 {
			break
		}
		cmd := start(50)
		from := v2cp()
		waitUntil(t, 30*time.Second, "the rebuild to commit a batch", func() bool { return v2cp() != from || active() == 2 })
		time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond) // a random moment, not synchronisation
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		kills++
		if a := active(); a != 1 && a != 2 {
			t.Fatalf("active version %d after a kill", a)
		}
	}
	t.Logf("%d SIGKILLs of a rebuilding process; v2 checkpoint %s, active v%d", kills, v2cp(), active())
	if kills < 3 {
		t.Fatalf("only %d kills landed before the switch; the log is too short for this machine", kills)
	}

	t0 := time.Now()
	last := start(500)
	if err := last.Wait(); err != nil {
		t.Fatalf("final rebuild run: %v", err)
	}
	if a := active(); a != 2 {
		t.Fatalf("active v%d after the rebuild, want v2", a)
	}
	t.Logf("final run took %v", time.Since(t0))
	select {
	case <-x1.done:
	case <-time.After(30 * time.Second):
		t.Fatal("v1 runner still running 30s after the switch")
	}
	if !errors.Is(x1.err, ErrSuperseded) {
		t.Fatalf("v1 runner: %v, want ErrSuperseded", x1.err)
	}
	if n := versionKeys(t, rdb, "p", 1); n != 0 {
		t.Fatalf("%d keys of v1 left", n)
	}
	startRunner(t, newRunner(t, Config{Store: store, Redis: rdb, Projection: tally("p", 2), Logger: quietLogger()}))
	app.halt()
	if app.err != nil {
		t.Fatal(app.err)
	}
	head, _ = store.Head(ctx)
	waitFor(t, rdb, "p", head)
	got := dumpVersion(t, rdb, "p", 2)
	want := referenceModel(t, store, "p", 2, head)
	if d := diffModels(want, got); d != "" || len(want) == 0 {
		t.Fatalf("model after crashed rebuilds differs from a from-scratch build:\n%s", d)
	}
	if got["applied"] != fmt.Sprint(head.Commit) {
		t.Fatalf("applied %s, want %d", got["applied"], head.Commit)
	}
}

package query_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/query"
)

// noFallback makes the fallback poll so rare that a test passing with it
// proves the notification woke the waiter.
const noFallback = time.Hour

func newWatcher(t *testing.T, rdb redis.UniversalClient, cfg query.WatcherConfig) *query.Watcher {
	t.Helper()
	w := query.NewWatcher(rdb, cfg)
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// commit does what a runner's batch does: write the checkpoint of build b
// and announce it, in one MULTI/EXEC.
func commit(t *testing.T, rdb redis.UniversalClient, name string, b query.Build, pos uint64) {
	t.Helper()
	ctx := context.Background()
	p := eventstore.SeqPosition(pos).String()
	_, err := rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.HSet(ctx, query.CheckpointKey(name, b), query.FieldPosition, p)
		pipe.Publish(ctx, query.CommitChannel(name), query.CommitMessage(b, p))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// eventually waits for cond with a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func setup(t *testing.T) (*redistest.Server, *redis.Client) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	if err := rdb.Set(ctx, query.ActiveKey("carts"), "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	commit(t, rdb, "carts", query.Build{Version: 1}, 10)
	return srv, rdb
}

func TestWatcherWakesOnCommitNotification(t *testing.T) {
	_, rdb := setup(t)
	w := newWatcher(t, rdb, query.WatcherConfig{FallbackPoll: noFallback})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Reached already: no wait.
	if _, err := w.WaitFor(ctx, "carts", eventstore.SeqPosition(10)); err != nil {
		t.Fatal(err)
	}
	type result struct {
		v   *query.View
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := w.WaitFor(ctx, "carts", eventstore.SeqPosition(12))
		done <- result{v, err}
	}()
	eventually(t, "the waiter to register", func() bool { return w.Waiting() == 1 && query.Settled(w) })
	commit(t, rdb, "carts", query.Build{Version: 1}, 11) // not far enough
	eventually(t, "the notification", func() bool { return w.Stats().Notifications >= 1 })
	select {
	case r := <-done:
		t.Fatalf("woken before its position: %v %v", r.v, r.err)
	default:
	}
	commit(t, rdb, "carts", query.Build{Version: 1}, 12)
	r := <-done // bounded by ctx: a missed notification fails with its error
	if r.err != nil {
		t.Fatalf("waiter not woken by the commit (fallback poll is %v): %v", noFallback, r.err)
	}
	if cp, err := r.v.Checkpoint(ctx); err != nil || cp != eventstore.SeqPosition(12) {
		t.Fatalf("woken view at %v, %v; want 12", cp, err)
	}
	if w.Waiting() != 0 {
		t.Fatalf("Waiting() = %d after the wake-up", w.Waiting())
	}
}

// commandCalls returns the calls of each command since the last CONFIG
// RESETSTAT, from INFO commandstats.
func commandCalls(t *testing.T, rdb *redis.Client) map[string]int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		calls[strings.TrimPrefix(name, "cmdstat_")], _ = strconv.Atoi(n)
	}
	return calls
}

// TestWatcherIdleWaitersCostNoCommands: many waiters for a far-future
// position, while the projection keeps committing below it, send Redis
// nothing beyond the test's own commits (polling waiters would send two
// commands each every few milliseconds).
func TestWatcherIdleWaitersCostNoCommands(t *testing.T) {
	_, rdb := setup(t)
	w := newWatcher(t, rdb, query.WatcherConfig{FallbackPoll: noFallback})
	ctx, cancel := context.WithCancel(context.Background())
	const waiters, commits = 500, 50
	var wg sync.WaitGroup
	errs := make(chan error, waiters)
	for range waiters {
		wg.Go(func() {
			_, err := w.WaitFor(ctx, "carts", eventstore.SeqPosition(1_000_000))
			errs <- err
		})
	}
	eventually(t, "the waiters to register", func() bool { return w.Waiting() == waiters && query.Settled(w) })
	if err := rdb.ConfigResetStat(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	before := w.Stats()
	for i := range commits {
		commit(t, rdb, "carts", query.Build{Version: 1}, uint64(11+i))
	}
	eventually(t, "the notifications", func() bool { return w.Stats().Notifications-before.Notifications == commits })
	calls := commandCalls(t, rdb)
	for cmd, n := range calls {
		switch cmd {
		case "multi", "exec", "hset", "publish", "config|resetstat", "info":
			// the test's own
		default:
			t.Errorf("%d %s while %d waiters wait", n, cmd, waiters)
		}
	}
	if got := w.Stats().Checks - before.Checks; got != 0 {
		t.Errorf("%d re-checks for commits that satisfy no waiter", got)
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("waiter ended with %v, want context.Canceled", err)
		}
	}
	if w.Waiting() != 0 {
		t.Fatalf("Waiting() = %d after cancellation", w.Waiting())
	}
}

func TestWatcherMaxWaiters(t *testing.T) {
	_, rdb := setup(t)
	w := newWatcher(t, rdb, query.WatcherConfig{FallbackPoll: noFallback, MaxWaiters: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := w.WaitFor(ctx, "carts", eventstore.SeqPosition(20))
			done <- err
		}()
	}
	eventually(t, "two waiters", func() bool { return w.Waiting() == 2 })
	if _, err := w.WaitFor(ctx, "carts", eventstore.SeqPosition(20)); !errors.Is(err, query.ErrTooManyWaiters) {
		t.Fatalf("third waiter: %v, want ErrTooManyWaiters", err)
	}
	// A query whose position is reached, or that has none, does not wait
	// and is served while the waiters are full.
	if _, err := w.WaitFor(ctx, "carts", eventstore.SeqPosition(10)); err != nil {
		t.Fatalf("reached position while full: %v", err)
	}
	if _, err := w.WaitFor(ctx, "carts", eventstore.Position{}); err != nil {
		t.Fatalf("no position while full: %v", err)
	}
	commit(t, rdb, "carts", query.Build{Version: 1}, 20)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.WaitFor(ctx, "carts", eventstore.SeqPosition(20)); err != nil {
		t.Fatalf("after the waiters left: %v", err)
	}
}

// TestWatcherRechecksAfterReconnect: a commit made right after Redis came
// back may be announced before the Watcher has resubscribed, to nobody; the
// re-check on resubscription still wakes the waiter without the fallback
// poll. (Whichever of the two comes first, the waiter must wake.)
func TestWatcherRechecksAfterReconnect(t *testing.T) {
	srv := redistest.StartWith(t, redistest.Options{Persistent: true})
	if srv.Kind != redistest.KindProcess {
		t.Fatalf("needs a private redis-server, got %s", srv.Kind)
	}
	rdb := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb.Set(ctx, query.ActiveKey("carts"), "1", 0)
	commit(t, rdb, "carts", query.Build{Version: 1}, 10)
	w := newWatcher(t, rdb, query.WatcherConfig{FallbackPoll: noFallback})
	eventually(t, "the subscription", func() bool { return w.Stats().Subscriptions == 1 })
	done := make(chan error, 1)
	go func() {
		_, err := w.WaitFor(ctx, "carts", eventstore.SeqPosition(11))
		done <- err
	}()
	eventually(t, "the waiter", func() bool { return w.Waiting() == 1 && query.Settled(w) })
	srv.Kill()
	srv.Restart()
	eventually(t, "the restarted server", func() bool { return rdb.Ping(ctx).Err() == nil })
	commit(t, rdb, "carts", query.Build{Version: 1}, 11)
	if err := <-done; err != nil {
		t.Fatalf("waiter not woken after the reconnect: %v", err)
	}
	if w.Stats().Subscriptions < 2 {
		t.Fatalf("Subscriptions = %d, want a resubscription (%+v)", w.Stats().Subscriptions, w.Stats())
	}
}

// TestWatcherFallbackPoll: with no notification at all, a waiter still
// wakes by the fallback poll.
func TestWatcherFallbackPoll(t *testing.T) {
	_, rdb := setup(t)
	w := newWatcher(t, rdb, query.WatcherConfig{FallbackPoll: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := w.WaitFor(ctx, "carts", eventstore.SeqPosition(11))
		done <- err
	}()
	eventually(t, "the waiter", func() bool { return w.Waiting() == 1 })
	rdb.HSet(ctx, query.CheckpointKey("carts", query.Version(1)), query.FieldPosition, "11")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestWatcherResolveCachesActiveBuild(t *testing.T) {
	_, rdb := setup(t)
	ctx := context.Background()
	long := newWatcher(t, rdb, query.WatcherConfig{FallbackPoll: noFallback, ActiveTTL: time.Hour})
	short := newWatcher(t, rdb, query.WatcherConfig{FallbackPoll: noFallback, ActiveTTL: 20 * time.Millisecond})
	none := newWatcher(t, rdb, query.WatcherConfig{FallbackPoll: noFallback, ActiveTTL: -1})
	for _, w := range []*query.Watcher{long, short, none} {
		if v, err := w.Resolve(ctx, "carts"); err != nil || v.Build() != (query.Build{Version: 1}) {
			t.Fatalf("Resolve = %v, %v", v, err)
		}
	}
	rdb.Set(ctx, query.ActiveKey("carts"), "1g1", 0)
	if v, _ := long.Resolve(ctx, "carts"); v.Build() != (query.Build{Version: 1}) {
		t.Fatalf("cached Resolve = %s, want the cached 1", v.Build())
	}
	if v, _ := none.Resolve(ctx, "carts"); v.Build() != (query.Build{Version: 1, Generation: 1}) {
		t.Fatalf("uncached Resolve = %s, want 1g1", v.Build())
	}
	eventually(t, "the short cache to expire", func() bool {
		v, err := short.Resolve(ctx, "carts")
		return err == nil && v.Build() == query.Build{Version: 1, Generation: 1}
	})
	// Not ready is never cached.
	rdb.Del(ctx, query.ActiveKey("other"))
	if _, err := long.Resolve(ctx, "other"); !errors.Is(err, query.ErrNotReady) {
		t.Fatalf("Resolve of a projection with no active build: %v", err)
	}
}

func TestWatcherCloseReleasesWaiters(t *testing.T) {
	_, rdb := setup(t)
	w := query.NewWatcher(rdb, query.WatcherConfig{FallbackPoll: noFallback})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := w.WaitFor(ctx, "carts", eventstore.SeqPosition(11))
		done <- err
	}()
	eventually(t, "the waiter", func() bool { return w.Waiting() == 1 })
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, query.ErrWatcherClosed) {
		t.Fatalf("waiter after Close: %v", err)
	}
	if _, err := w.WaitFor(ctx, "carts", eventstore.SeqPosition(11)); !errors.Is(err, query.ErrWatcherClosed) {
		t.Fatalf("WaitFor after Close: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestWaitForFirstBuild: a wait on a projection with no active build yet
// waits for one instead of failing. The commits of the build being made do
// not wake it while it is not active; the switch's announcement does, with
// no fallback poll. A zero position still fails at once with ErrNotReady,
// and a wait whose ctx ends first matches both ErrNotReady and ctx's error.
func TestWaitForFirstBuild(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	w := newWatcher(t, rdb, query.WatcherConfig{FallbackPoll: noFallback})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := w.WaitFor(ctx, "carts", eventstore.Start); !errors.Is(err, query.ErrNotReady) {
		t.Fatalf("WaitFor(Start) with no active build = %v, want ErrNotReady", err)
	}
	for name, wait := range map[string]func(context.Context) error{
		"Watcher.WaitFor": func(c context.Context) error { _, err := w.WaitFor(c, "carts", eventstore.SeqPosition(5)); return err },
		"WaitFor": func(c context.Context) error {
			_, err := query.WaitFor(c, rdb, "carts", eventstore.SeqPosition(5))
			return err
		},
	} {
		short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
		err := wait(short)
		cancelShort()
		if !errors.Is(err, query.ErrNotReady) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s with no active build, ctx ended = %v; want ErrNotReady and deadline exceeded", name, err)
		}
	}

	type result struct {
		v   *query.View
		err error
	}
	watched, polled := make(chan result, 1), make(chan result, 1)
	go func() {
		v, err := w.WaitFor(ctx, "carts", eventstore.SeqPosition(5))
		watched <- result{v, err}
	}()
	go func() {
		v, err := query.WaitFor(ctx, rdb, "carts", eventstore.SeqPosition(5))
		polled <- result{v, err}
	}()
	eventually(t, "the waiter to register", func() bool { return w.Waiting() == 1 && query.Settled(w) })
	b := query.Version(1)
	commit(t, rdb, "carts", b, 5) // caught up, not active yet
	eventually(t, "the notification", func() bool { return w.Stats().Notifications >= 1 && query.Settled(w) })
	select {
	case r := <-watched:
		t.Fatalf("woken before a build was active: %v %v", r.v, r.err)
	default:
	}
	// The switch, as the runner's script does it: active key and
	// announcement in one step.
	_, err := rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Set(ctx, query.ActiveKey("carts"), b.String(), 0)
		pipe.Publish(ctx, query.CommitChannel("carts"), query.CommitMessage(b, eventstore.SeqPosition(5).String()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]chan result{"Watcher.WaitFor": watched, "WaitFor": polled} {
		r := <-ch // bounded by ctx
		if r.err != nil || r.v.Build() != b {
			t.Fatalf("%s = %+v, %v; want a view of build %v", name, r.v, r.err, b)
		}
	}
}

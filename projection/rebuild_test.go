package projection

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

// tally is the rebuild tests' projection. Version v adds v to counts[stream]
// for every record and 1 to "applied", so that in any consistent snapshot of
// a complete model built from a log of contiguous positions
//
//	applied == checkpoint and sum(counts) == v × applied,
//
// and a reader that once saw applied = A must never see less: a half-built
// version shows a smaller applied than the live one it would replace.
func tally(name string, version int) Projection {
	return Define(name, version, func(ctx context.Context, tx *Tx, rec eventstore.Record) error {
		tx.Pipe().HIncrBy(ctx, tx.Key("counts"), rec.StreamID, int64(version))
		tx.Pipe().Incr(ctx, tx.Key("applied"))
		return nil
	})
}

// snapshot is one query: resolve the active version, then read its model and
// checkpoint in one MULTI, as a query service would read a document.
type snapshot struct {
	build      query.Build
	applied    int64
	sum        int64
	checkpoint eventstore.Position
}

func readSnapshot(ctx context.Context, rdb redis.Cmdable, name string) (snapshot, error) {
	v, err := query.Resolve(ctx, rdb, name)
	if err != nil {
		return snapshot{}, err
	}
	pipe := rdb.TxPipeline()
	applied := pipe.Get(ctx, v.Key("applied"))
	counts := pipe.HGetAll(ctx, v.Key("counts"))
	cp := pipe.HGet(ctx, query.CheckpointKey(name, v.Build()), query.FieldPosition)
	if _, err := pipe.Exec(ctx); err != nil {
		return snapshot{}, fmt.Errorf("read v%s: %w", v.Build(), err)
	}
	s := snapshot{build: v.Build()}
	s.applied, _ = applied.Int64()
	for _, c := range counts.Val() {
		n, _ := strconv.ParseInt(c, 10, 64)
		s.sum += n
	}
	s.checkpoint, err = eventstore.ParsePosition(cp.Val())
	return s, err
}

func (s snapshot) check(prev snapshot) error {
	switch {
	case s.applied == 0:
		return fmt.Errorf("v%s: empty model", s.build)
	case uint64(s.applied) != s.checkpoint.Commit:
		return fmt.Errorf("v%s: applied %d but checkpoint %s", s.build, s.applied, s.checkpoint)
	case s.sum != int64(s.build.Version)*s.applied:
		return fmt.Errorf("v%s: counts sum to %d for %d applied", s.build, s.sum, s.applied)
	case s.applied < prev.applied:
		return fmt.Errorf("went back in time: v%s applied %d after v%s applied %d", s.build, s.applied, prev.build, prev.applied)
	case s.build.Before(prev.build):
		return fmt.Errorf("build went back from v%s to v%s", prev.build, s.build)
	}
	return nil
}

// liveReaders query a projection in a loop, each checking every response
// against the previous one, and count the responses per build.
type liveReaders struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errs    chan error
	queries atomic.Int64
	failed  atomic.Int64
	mu      sync.Mutex
	byBuild map[query.Build]int64
}

func startReaders(t testing.TB, rdb redis.Cmdable, name string, n int) *liveReaders {
	ctx, cancel := context.WithCancel(context.Background())
	lr := &liveReaders{cancel: cancel, errs: make(chan error, n), byBuild: map[query.Build]int64{}}
	for range n {
		lr.wg.Add(1)
		go func() {
			defer lr.wg.Done()
			var prev snapshot
			for ctx.Err() == nil {
				s, err := readSnapshot(ctx, rdb, name)
				if ctx.Err() != nil {
					return
				}
				if err == nil {
					err = s.check(prev)
				}
				if err != nil {
					lr.failed.Add(1)
					lr.errs <- err
					return
				}
				prev = s
				lr.queries.Add(1)
				lr.mu.Lock()
				lr.byBuild[s.build]++
				lr.mu.Unlock()
			}
		}()
	}
	t.Cleanup(func() { lr.stop() })
	return lr
}

// on returns how many responses came from build b.
func (lr *liveReaders) on(b query.Build) int64 {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return lr.byBuild[b]
}

// stop stops the readers and returns the errors they met.
func (lr *liveReaders) stop() []error {
	lr.cancel()
	lr.wg.Wait()
	var errs []error
	for {
		select {
		case err := <-lr.errs:
			errs = append(errs, err)
		default:
			return errs
		}
	}
}

// dumpVersion reads every model key of generation 0 of one version
// (bookkeeping left out).
func dumpVersion(t testing.TB, rdb redis.UniversalClient, name string, version int) map[string]string {
	return dumpBuild(t, rdb, name, query.Build{Version: version})
}

// dumpBuild reads every model key of one build, named relative to the
// build's prefix so that builds compare.
func dumpBuild(t testing.TB, rdb redis.UniversalClient, name string, b query.Build) map[string]string {
	t.Helper()
	ctx := context.Background()
	m := map[string]string{}
	p := query.Prefix(name, b)
	for _, k := range []string{"applied"} {
		if v, err := rdb.Get(ctx, p+k).Result(); err == nil {
			m[k] = v
		}
	}
	for f, v := range rdb.HGetAll(ctx, p+"counts").Val() {
		m["counts#"+f] = v
	}
	return m
}

// versionKeys counts the keys of generation 0 of one version, bookkeeping
// included.
func versionKeys(t testing.TB, rdb redis.UniversalClient, name string, version int) int {
	t.Helper()
	return buildKeys(t, rdb, name, query.Build{Version: version})
}

// buildKeys counts the keys of one build, bookkeeping included.
func buildKeys(t testing.TB, rc redis.UniversalClient, name string, b query.Build) int {
	t.Helper()
	return prefixKeys(t, rc, query.Prefix(name, b))
}

// prefixKeys counts the keys that start with prefix, all in one hash tag.
func prefixKeys(t testing.TB, rc redis.UniversalClient, prefix string) int {
	t.Helper()
	// On Redis Cluster, KEYS lists one node's keys: ask the tag's.
	rdb, err := nodeOf(context.Background(), rc, prefix)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := rdb.Keys(context.Background(), prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return len(keys)
}

// referenceModel builds version of name from scratch in a fresh Redis.
func referenceModel(t testing.TB, store eventstore.Store, name string, version int, head eventstore.Position) map[string]string {
	t.Helper()
	ref := redistest.Start(t)
	refc := ref.Client(t)
	r := newRunner(t, Config{Store: store, Redis: refc, Projection: tally(name, version), Logger: quietLogger()})
	x := startRunner(t, r)
	waitFor(t, refc, name, head)
	_ = x.stop()
	return dumpVersion(t, refc, name, version)
}

func appendTally(t testing.TB, s eventstore.Store, from, to int) eventstore.Position {
	t.Helper()
	var pos eventstore.Position
	for i := from; i < to; {
		n := min(10, to-i)
		evs := make([]eventstore.Event, n)
		for j := range evs {
			evs[j] = eventstore.Event{Type: "t"}
		}
		res, err := s.Append(context.Background(), streamOf(i), eventstore.Any, evs...)
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		pos, i = res.Position, i+n
	}
	return pos
}

// liveAppender appends until halted, pacing itself so that the log grows
// during the whole test.
type liveAppender struct {
	stop chan struct{}
	done chan struct{}
	err  error
	n    atomic.Int64
}

// startAppender appends events of type "t" from number from on.
func startAppender(t testing.TB, s eventstore.Store, from int) *liveAppender {
	return startAppenderOf(t, s, from, func(int) eventstore.Event { return eventstore.Event{Type: "t"} })
}

// startSteadyAppender appends the counter model's events (event) from 0 on.
func startSteadyAppender(t testing.TB, s eventstore.Store) *liveAppender {
	return startAppenderOf(t, s, 0, event)
}

func startAppenderOf(t testing.TB, s eventstore.Store, from int, ev func(int) eventstore.Event) *liveAppender {
	return startPacedAppender(t, s, from, ev, streamOf, 10)
}

// startPacedAppender appends ev(i) to stream(i) for i from from on, and
// pauses a millisecond after every every appends.
func startPacedAppender(t testing.TB, s eventstore.Store, from int, ev func(int) eventstore.Event,
	stream func(int) string, every int) *liveAppender {
	a := &liveAppender{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for i := from; ; i++ {
			select {
			case <-a.stop:
				return
			default:
			}
			if _, err := s.Append(context.Background(), stream(i), eventstore.Any, ev(i)); err != nil {
				a.err = err
				return
			}
			a.n.Add(1)
			if (i-from+1)%every == 0 {
				time.Sleep(time.Millisecond) // pacing, not synchronisation
			}
		}
	}()
	t.Cleanup(a.halt)
	return a
}

func (a *liveAppender) halt() {
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	<-a.done
}

// TestRebuildUnderLiveQueries rebuilds a projection blue/green while events
// are appended and four readers query it in a loop. Every response must be a
// complete, consistent model that never goes back in time, the old version's
// runner must step down, its keys must be removed, and the new model must
// equal a from-scratch build.
func TestRebuildUnderLiveQueries(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	store := memory.New()
	ctx := context.Background()
	appendTally(t, store, 0, 60_000)

	v1 := newRunner(t, Config{Store: store, Redis: rdb, Projection: tally("p", 1), Logger: quietLogger()})
	x1 := startRunner(t, v1)
	head, _ := store.Head(ctx)
	waitFor(t, rdb, "p", head)

	app := startAppender(t, store, 60_000)
	rd := startReaders(t, rdb, "p", 4)
	v1b, v2b := query.Build{Version: 1}, query.Build{Version: 2}
	started := time.Now()

	var phases sync.Map
	res, err := Rebuild(ctx, Config{Store: store, Redis: rdb, Projection: tally("p", 2), Logger: quietLogger(),
		RetireDelay: time.Second, LeaseTTL: time.Second},
		RebuildOptions{ProgressEvery: 20 * time.Millisecond, Progress: func(p Progress) { phases.Store(p.Phase, true) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Previous != 1 || res.Version != 2 || res.AlreadyActive {
		t.Fatalf("result %+v", res)
	}
	if err := x1.stop(); !errors.Is(err, ErrSuperseded) {
		t.Fatalf("v1 runner returned %v, want ErrSuperseded", err)
	}
	// The new code's projector takes over from the rebuild.
	v2 := newRunner(t, Config{Store: store, Redis: rdb, Projection: tally("p", 2), Logger: quietLogger()})
	startRunner(t, v2)
	// Keep querying until the readers have seen v2 for a while.
	waitUntil(t, 30*time.Second, "queries on v2", func() bool { return rd.on(v2b) > 200 || rd.failed.Load() == 4 })
	app.halt()
	if app.err != nil {
		t.Fatal(app.err)
	}
	head, _ = store.Head(ctx)
	waitFor(t, rdb, "p", head)
	for _, err := range rd.stop() {
		t.Errorf("query: %v", err)
	}
	elapsed := time.Since(started)
	t.Logf("%d queries in %v (%.0f/s): %d on v1, %d on v2; %d events appended during the rebuild",
		rd.queries.Load(), elapsed.Round(time.Millisecond), float64(rd.queries.Load())/elapsed.Seconds(), rd.on(v1b), rd.on(v2b), app.n.Load())
	if rd.on(v1b) == 0 || rd.on(v2b) == 0 {
		t.Errorf("queries on v1 %d, on v2 %d: both versions must have served", rd.on(v1b), rd.on(v2b))
	}
	for _, ph := range []Phase{PhaseCatchingUp, PhaseDone} {
		if _, ok := phases.Load(ph); !ok {
			t.Errorf("progress never reported phase %s", ph)
		}
	}
	if n := versionKeys(t, rdb, "p", 1); n != 0 {
		t.Errorf("%d keys of v1 left after the rebuild", n)
	}
	if vs := rdb.SMembers(ctx, VersionsKey("p")).Val(); len(vs) != 1 || vs[0] != "2" {
		t.Errorf("versions set %v, want [2]", vs)
	}
	if n := rdb.SCard(ctx, RetiredKey("p")).Val(); n != 0 {
		t.Errorf("retired set has %d versions", n)
	}
	got := dumpVersion(t, rdb, "p", 2)
	want := referenceModel(t, store, "p", 2, head)
	if d := diffModels(want, got); d != "" || len(want) == 0 {
		t.Fatalf("rebuilt model differs from a from-scratch build:\n%s", d)
	}
}

// TestNewVersionRunnerRebuildsOnStart deploys a runner with a bumped version
// beside the old one (the default ActivateIfNewer): it builds, switches, and
// removes the old version; the old runner stops with ErrSuperseded; an old
// runner started afterwards refuses to write, and so does Rebuild of it.
func TestNewVersionRunnerRebuildsOnStart(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	store := memory.New()
	ctx := context.Background()
	head := appendTally(t, store, 0, 3000)
	x1 := startRunner(t, newRunner(t, Config{Store: store, Redis: rdb, Projection: tally("p", 1), Logger: quietLogger()}))
	waitFor(t, rdb, "p", head)

	// ActivateIfNone refuses a newer version with a clear error.
	refused := newRunner(t, Config{Store: store, Redis: rdb, Projection: tally("p", 2), Activation: ActivateIfNone, Logger: quietLogger()})
	if err := refused.Run(ctx); !errors.Is(err, ErrNewVersion) {
		t.Fatalf("ActivateIfNone with a newer version: %v, want ErrNewVersion", err)
	}

	x2 := startRunner(t, newRunner(t, Config{Store: store, Redis: rdb, Projection: tally("p", 2), Logger: quietLogger(), RetireDelay: time.Millisecond}))
	head = appendTally(t, store, 3000, 4000)
	waitUntil(t, 30*time.Second, "the switch to v2", func() bool {
		v, err := query.Resolve(ctx, rdb, "p")
		return err == nil && v.Version == 2
	})
	// The v1 runner steps down by itself.
	select {
	case <-x1.done:
	case <-time.After(30 * time.Second):
		t.Fatal("v1 runner still running 30s after the switch")
	}
	if !errors.Is(x1.err, ErrSuperseded) {
		t.Fatalf("v1 runner: %v, want ErrSuperseded", x1.err)
	}
	waitFor(t, rdb, "p", head)
	waitUntil(t, 10*time.Second, "removal of v1", func() bool { return versionKeys(t, rdb, "p", 1) == 0 })
	if d := diffModels(referenceModel(t, store, "p", 2, head), dumpVersion(t, rdb, "p", 2)); d != "" {
		t.Fatalf("model differs:\n%s", d)
	}

	old := newRunner(t, Config{Store: store, Redis: rdb, Projection: tally("p", 1), Logger: quietLogger()})
	if err := old.Run(ctx); !errors.Is(err, ErrSuperseded) {
		t.Fatalf("v1 runner after the switch: %v, want ErrSuperseded", err)
	}
	if n := versionKeys(t, rdb, "p", 1); n != 0 {
		t.Fatalf("a superseded runner left %d keys", n)
	}
	if _, err := Rebuild(ctx, Config{Store: store, Redis: rdb, Projection: tally("p", 1)}, RebuildOptions{}); !errors.Is(err, ErrSuperseded) {
		t.Fatalf("Rebuild of v1: %v, want ErrSuperseded", err)
	}
	res, err := Rebuild(ctx, Config{Store: store, Redis: rdb, Projection: tally("p", 2)}, RebuildOptions{})
	if err != nil || !res.AlreadyActive {
		t.Fatalf("Rebuild of the active version: %+v, %v", res, err)
	}
	_ = x2.stop()
}

// TestRebuildCancel cancels a rebuild half-way: the live version keeps its
// model and its runner, and the partial keys of the new version are removed.
func TestRebuildCancel(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	store := memory.New()
	ctx := context.Background()
	head := appendTally(t, store, 0, 30_000)
	startRunner(t, newRunner(t, Config{Store: store, Redis: rdb, Projection: tally("p", 1), Logger: quietLogger()}))
	waitFor(t, rdb, "p", head)
	before := dumpVersion(t, rdb, "p", 1)

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var sawPartial atomic.Bool
	_, err := Rebuild(rctx, Config{Store: store, Redis: rdb, Projection: tally("p", 2), Logger: quietLogger(), BatchSize: 100},
		RebuildOptions{ProgressEvery: time.Millisecond, Progress: func(p Progress) {
			if p.Checkpoint.Commit > 0 && p.Checkpoint.Before(p.Head) {
				sawPartial.Store(true)
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Rebuild returned %v, want context.Canceled", err)
	}
	t.Logf("cancelled: %v", err)
	if !sawPartial.Load() {
		t.Fatal("the rebuild was not cancelled half-way")
	}
	if v, err := query.Resolve(ctx, rdb, "p"); err != nil || v.Version != 1 {
		t.Fatalf("active after cancel: %v, %v", v, err)
	}
	if d := diffModels(before, dumpVersion(t, rdb, "p", 1)); d != "" {
		t.Fatalf("live model changed:\n%s", d)
	}
	if n := versionKeys(t, rdb, "p", 2); n != 0 {
		t.Fatalf("%d keys of the cancelled v2 left", n)
	}
	if rdb.SIsMember(ctx, VersionsKey("p"), 2).Val() {
		t.Fatal("v2 still in the versions set")
	}
	// The live version is still being updated.
	head = appendTally(t, store, 30_000, 30_100)
	waitFor(t, rdb, "p", head)
	if d := diffModels(referenceModel(t, store, "p", 1, head), dumpVersion(t, rdb, "p", 1)); d != "" {
		t.Fatalf("live model differs after the cancel:\n%s", d)
	}
}

// TestDiscardRefusesActiveAndBusy checks Discard's guards.
func TestDiscardRefusesActiveAndBusy(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	store := memory.New()
	ctx := context.Background()
	head := appendTally(t, store, 0, 100)
	x := startRunner(t, newRunner(t, Config{Store: store, Redis: rdb, Projection: tally("p", 1), Logger: quietLogger()}))
	waitFor(t, rdb, "p", head)
	if _, err := Discard(ctx, rdb, "p", query.Version(1)); !errors.Is(err, ErrBusy) {
		t.Fatalf("Discard of a version with a lease holder: %v, want ErrBusy", err)
	}
	_ = x.stop()
	if _, err := Discard(ctx, rdb, "p", query.Version(1)); !errors.Is(err, ErrActive) {
		t.Fatalf("Discard of the active version: %v, want ErrActive", err)
	}
	if versionKeys(t, rdb, "p", 1) == 0 {
		t.Fatal("the active version was removed")
	}
	stealLease(t, rdb, leaseKey("p", query.Build{Version: 3}), "someone")
	rdb.Set(ctx, query.Key("p", query.Version(3), "x"), "1", 0)
	if _, err := Discard(ctx, rdb, "p", query.Version(3)); !errors.Is(err, ErrBusy) {
		t.Fatalf("Discard of a held version: %v, want ErrBusy", err)
	}
	rdb.Del(ctx, leaseKey("p", query.Build{Version: 3}))
	if n, err := Discard(ctx, rdb, "p", query.Version(3)); err != nil || n != 1 {
		t.Fatalf("Discard of v3: %d, %v", n, err)
	}
	if versionKeys(t, rdb, "p", 3) != 0 {
		t.Fatal("v3 keys left")
	}
}

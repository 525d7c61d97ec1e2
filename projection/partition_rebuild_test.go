package projection

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

// partBuildKeys counts the keys of build b of name, partitioned in n: those
// in each partition's tag and those in the projection's own, each asked of
// its node.
func partBuildKeys(t testing.TB, rc redis.UniversalClient, name string, b query.Build, n int) int {
	t.Helper()
	count := buildKeys(t, rc, name, b)
	for p := range n {
		count += prefixKeys(t, rc, query.PartitionPrefix(name, b, query.Partition{Index: p, Count: n}))
	}
	return count
}

// partHolders returns the lease holder of each of the n partitions of build b.
func partHolders(rdb redis.UniversalClient, name string, b query.Build, n int) []string {
	hs := make([]string, n)
	for p := range hs {
		hs[p] = holderOf(rdb, partLeaseKey(name, b, query.Partition{Index: p, Count: n}))
	}
	return hs
}

// noLeftovers fails t if anything of build b of name is left: keys in any
// tag, its entry in the partitions hash, the versions or the retired set,
// its members set.
func noLeftovers(t testing.TB, rdb redis.UniversalClient, name string, b query.Build, n int) {
	t.Helper()
	ctx := context.Background()
	if k := partBuildKeys(t, rdb, name, b, n); k != 0 {
		t.Errorf("%d keys of v%s left", k, b)
	}
	if rdb.HExists(ctx, query.PartitionsKey(name), b.String()).Val() {
		t.Errorf("v%s still in the partitions hash", b)
	}
	if rdb.SIsMember(ctx, VersionsKey(name), b.String()).Val() || rdb.SIsMember(ctx, RetiredKey(name), b.String()).Val() {
		t.Errorf("v%s still in the versions or the retired set", b)
	}
	if rdb.Exists(ctx, query.MembersKey(name, b)).Val() != 0 {
		t.Errorf("members set of v%s left: %v", b, rdb.ZRange(ctx, query.MembersKey(name, b), 0, -1).Val())
	}
}

// startSlowAppender appends the counter model's events from number from on,
// one every millisecond or so: slow enough that a rebuild catches up on a
// loaded machine, so the test ends.
func startSlowAppender(t testing.TB, s eventstore.Store, from int) *liveAppender {
	return startPacedAppender(t, s, from, event, func(i int) string { return "cart-" + strconv.Itoa(i%40) }, 1)
}

// TestPartitionedForceRebuild force-rebuilds a partitioned projection whose
// generation 0 was damaged by hand, while events are appended and two live
// runners of the same version share its partitions. The rebuild builds all
// partitions of generation 1 in its own process, under its own leases,
// while the live runners go on applying to generation 0 alone; it switches
// the whole projection at once; the live runners then share the partitions
// of generation 1 and go on applying; generation 0 is removed and nothing
// of it comes back (a batch of generation 0 landing after the removal would
// write its checkpoint again); the final model equals the fold of the log,
// key for key. It runs on one node and on a cluster.
func TestPartitionedForceRebuild(t *testing.T) { onTargets(t, partitionedForceRebuild) }

func partitionedForceRebuild(t *testing.T, tg redisTarget) {
	rdb := tg.RDB
	store := memory.New()
	ctx := context.Background()
	const n = 4
	g0, g1 := query.Version(1), query.Build{Version: 1, Generation: 1}
	cfg := rebuildConfig(store, rdb, pcounts("fr", n), 50, 50*time.Millisecond)
	appendStreams(t, store, 0, 3000)
	xa := startRunner(t, newRunner(t, cfg("a")))
	xb := startRunner(t, newRunner(t, cfg("b")))
	head, _ := store.Head(ctx)
	v := waitFor(t, rdb, "fr", head)
	damaged := v.KeyFor("cart-7", "n", "cart-7")
	if err := rdb.HSet(ctx, damaged, "inc", 1000).Err(); err != nil {
		t.Fatal(err)
	}
	app := startSlowAppender(t, store, 3000)

	g0Start, err := query.ViewOf(rdb, "fr", g0, n).Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var (
		first    *Progress
		phases   []Phase
		problems []string
		g0Moved  bool
	)
	// A deadline, not a timing claim: a rebuild that never ends fails here.
	rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	res, err := Rebuild(rctx, cfg("rebuild"), RebuildOptions{Force: true, ProgressEvery: 20 * time.Millisecond, Progress: func(p Progress) {
		if first == nil {
			first = &p
		}
		if !slices.Contains(phases, p.Phase) {
			phases = append(phases, p.Phase)
		}
		if len(p.Parts) != n {
			problems = append(problems, fmt.Sprintf("progress with %d partitions: %+v", len(p.Parts), p))
			return
		}
		g0Holders := partHolders(rdb, "fr", g0, n)
		cp, _ := query.ViewOf(rdb, "fr", g0, n).Checkpoint(ctx)
		if a, err := activeBuild(ctx, rdb, "fr"); err != nil || a != g0 {
			return // switched since: the holders may be moving
		}
		// Before the switch: generation 1 is written by the rebuild's
		// runner only, generation 0 by the live runners only.
		for _, pp := range p.Parts {
			if pp.Holder != "" && pp.Holder != "rebuild" {
				problems = append(problems, fmt.Sprintf("partition %d of generation 1 held by %q before the switch", pp.Partition, pp.Holder))
			}
		}
		for i, h := range g0Holders {
			if h != "" && h != "a" && h != "b" {
				problems = append(problems, fmt.Sprintf("partition %d of generation 0 held by %q", i, h))
			}
		}
		if g0Start.Before(cp) {
			g0Moved = true
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
	want := RebuildResult{Name: "fr", Version: 1, Generation: 1, Previous: 1, Checkpoint: res.Checkpoint}
	if res != want {
		t.Fatalf("result %+v, want %+v", res, want)
	}
	if first == nil || first.Generation != 1 || !first.Checkpoint.IsZero() || len(first.Parts) != n {
		t.Fatalf("first progress %+v: want generation 1 from the start, %d partitions", first, n)
	}
	if !slices.Contains(phases, PhaseCatchingUp) || !slices.Contains(phases, PhaseDone) {
		t.Errorf("phases reported: %v", phases)
	}
	if !g0Moved {
		t.Error("the live runners applied nothing to generation 0 during the rebuild")
	}
	for _, x := range []*running{xa, xb} {
		select {
		case <-x.done:
			t.Fatalf("a live runner stopped after the forced rebuild: %v", x.err)
		default:
		}
	}
	waitUntil(t, 30*time.Second, "the live runners to share generation 1", func() bool {
		return spread(partHolders(rdb, "fr", g1, n), "a", "b")
	})
	waitUntil(t, 30*time.Second, "removal of generation 0", func() bool { return partBuildKeys(t, rdb, "fr", g0, n) == 0 })
	// The live runners go on applying to generation 1.
	from, _ := query.ViewOf(rdb, "fr", g1, n).Checkpoint(ctx)
	waitUntil(t, 30*time.Second, "the live runners to apply appends to generation 1", func() bool {
		cp, err := query.ViewOf(rdb, "fr", g1, n).Checkpoint(ctx)
		return err == nil && from.Before(cp)
	})
	app.halt()
	if app.err != nil {
		t.Fatal(app.err)
	}
	head, _ = store.Head(ctx)
	v = waitFor(t, rdb, "fr", head)
	if v.Build() != g1 || v.Partitions != n {
		t.Fatalf("view %+v, want generation 1 in %d partitions", v, n)
	}
	if d := diffModels(pexpectedOf(t, store, "fr", g1, n), pdumpOf(t, rdb, "fr", g1, n)); d != "" {
		t.Fatalf("generation 1 differs from the fold of the log:\n%s", d)
	}
	for _, x := range []*running{xa, xb} {
		if err := x.stop(); err != nil {
			t.Fatalf("live runner: %v", err)
		}
	}
	noLeftovers(t, rdb, "fr", g0, n)
	if vs := rdb.SMembers(ctx, VersionsKey("fr")).Val(); len(vs) != 1 || vs[0] != "1g1" {
		t.Errorf("versions set %v, want [1g1]", vs)
	}
	if rdb.Exists(ctx, query.MembersKey("fr", g1)).Val() != 0 {
		t.Errorf("members of generation 1 left after every runner stopped: %v", rdb.ZRange(ctx, query.MembersKey("fr", g1), 0, -1).Val())
	}
	st, err := ReadStatus(ctx, rdb, "fr", query.Build{})
	if err != nil || st.Generation != 1 || !st.Active || len(st.Parts) != n {
		t.Errorf("status of the active build: %+v, %v", st, err)
	}
}

// TestPartitionedRebuildCancelCrashRestart: a forced rebuild of a
// partitioned projection cancelled in the middle leaves nothing of its
// generation; one whose process died in the middle (leases and membership
// left to expire) is resumed by the next forced rebuild from each
// partition's checkpoint, which waits for the dead leases and switches; one
// that died and is run again with Restart is discarded, every partition,
// and built from the start. Each replaced generation is removed without a
// trace, the live runner follows each switch, and the model equals the fold
// of the log. It runs on one node and on a cluster.
func TestPartitionedRebuildCancelCrashRestart(t *testing.T) {
	onTargets(t, partitionedRebuildCancelCrashRestart)
}

func partitionedRebuildCancelCrashRestart(t *testing.T, tg redisTarget) {
	rdb := tg.RDB
	store := memory.New()
	ctx := context.Background()
	const n = 3
	cfg := rebuildConfig(store, rdb, pcounts("cr", n), 20, 10*time.Millisecond)
	appendStreams(t, store, 0, 4000)
	xa := startRunner(t, newRunner(t, cfg("a")))
	head, _ := store.Head(ctx)
	waitFor(t, rdb, "cr", head)
	g0, g1, g2 := query.Version(1), query.Build{Version: 1, Generation: 1}, query.Build{Version: 1, Generation: 2}

	// Cancelled after a partition committed a batch.
	cctx, cancel := context.WithCancel(ctx)
	var once sync.Once
	_, err := Rebuild(cctx, cfg("cancelled"), RebuildOptions{Force: true, ProgressEvery: 5 * time.Millisecond, Progress: func(p Progress) {
		for _, pp := range p.Parts {
			if !pp.Checkpoint.IsZero() {
				once.Do(cancel)
			}
		}
	}})
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled rebuild: %v, want context.Canceled", err)
	}
	if a, _ := activeBuild(ctx, rdb, "cr"); a != g0 {
		t.Fatalf("active v%s after the cancel, want v%s", a, g0)
	}
	noLeftovers(t, rdb, "cr", g1, n)

	// crash runs a rebuilding runner of b that dies without a word once
	// every partition has committed a batch.
	// crash runs a rebuild runner of b, with leases of ttl, until every
	// partition has committed, and stops it without releasing its leases.
	crash := func(b query.Build, ttl time.Duration) []eventstore.Position {
		t.Helper()
		c := newRunner(t, func() Config {
			c := cfg("crashed-" + b.String())
			c.Activation, c.LeaseTTL = ActivateNever, ttl
			return c
		}())
		c.pinned, c.noRelease = &b, true
		xc := startRunner(t, c)
		var cps []eventstore.Position
		waitUntil(t, 30*time.Second, "every partition of v"+b.String()+" to commit", func() bool {
			var err error
			cps, err = query.ViewOf(rdb, "cr", b, n).Checkpoints(ctx)
			return err == nil && !slices.ContainsFunc(cps, eventstore.Position.IsZero)
		})
		_ = xc.stop()
		cps, err := query.ViewOf(rdb, "cr", b, n).Checkpoints(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if holders := partHolders(rdb, "cr", b, n); slices.Contains(holders, "") {
			t.Fatalf("the crashed runner's leases %v: want every partition's left to expire", holders)
		}
		return cps
	}
	rebuild := func(id string, opts RebuildOptions) (RebuildResult, Progress) {
		t.Helper()
		var first *Progress
		opts.Force, opts.ProgressEvery = true, 20*time.Millisecond
		opts.Progress = func(p Progress) {
			if first == nil {
				first = &p
			}
		}
		rctx, cancel := context.WithTimeout(ctx, 3*time.Minute) // a deadline, not a timing claim
		defer cancel()
		res, err := Rebuild(rctx, cfg(id), opts)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil || len(first.Parts) != n {
			t.Fatalf("first progress %+v", first)
		}
		return res, *first
	}
	check := func(b query.Build) {
		t.Helper()
		head, _ := store.Head(ctx)
		v := waitFor(t, rdb, "cr", head)
		if v.Build() != b {
			t.Fatalf("active v%s, want v%s", v.Build(), b)
		}
		if d := diffModels(pexpectedOf(t, store, "cr", b, n), pdumpOf(t, rdb, "cr", b, n)); d != "" {
			t.Fatalf("v%s differs from the fold of the log:\n%s", b, d)
		}
	}

	// Crashed, then resumed.
	left := crash(g1, time.Second)
	appendStreams(t, store, 4000, 4200)
	res, first := rebuild("resumer", RebuildOptions{})
	if res.Generation != 1 || res.PreviousGeneration != 0 {
		t.Fatalf("resumed rebuild: %+v", res)
	}
	for i, pp := range first.Parts {
		if pp.Checkpoint != left[i] {
			t.Errorf("partition %d resumed at %s, want %s where the crashed runner left it", i, pp.Checkpoint, left[i])
		}
	}
	check(g1)
	waitUntil(t, 30*time.Second, "removal of generation 0", func() bool { return partBuildKeys(t, rdb, "cr", g0, n) == 0 })
	noLeftovers(t, rdb, "cr", g0, n)

	// Crashed, then started over. The dead leases last long enough for the
	// refusal below however slow the machine; then they are waited out.
	crash(g2, 10*time.Second)
	appendStreams(t, store, 4200, 4300)
	if _, err := Rebuild(ctx, cfg("restarter"), RebuildOptions{Force: true, Restart: true}); !errors.Is(err, ErrBusy) {
		t.Fatalf("Restart while the crashed leases last: %v, want ErrBusy", err)
	}
	waitUntil(t, 30*time.Second, "the crashed leases to expire", func() bool {
		return !slices.ContainsFunc(partHolders(rdb, "cr", g2, n), func(h string) bool { return h != "" })
	})
	res, first = rebuild("restarter", RebuildOptions{Restart: true})
	if res.Generation != 2 || res.PreviousGeneration != 1 {
		t.Fatalf("restarted rebuild: %+v", res)
	}
	for _, pp := range first.Parts {
		if !pp.Checkpoint.IsZero() {
			t.Errorf("partition %d started at %s, want the start of the log", pp.Partition, pp.Checkpoint)
		}
	}
	check(g2)
	waitUntil(t, 30*time.Second, "removal of generation 1", func() bool { return partBuildKeys(t, rdb, "cr", g1, n) == 0 })
	waitUntil(t, 30*time.Second, "the live runner to write generation 2", func() bool {
		return !slices.ContainsFunc(partHolders(rdb, "cr", g2, n), func(h string) bool { return h != "a" })
	})
	if err := xa.stop(); err != nil {
		t.Fatalf("live runner: %v", err)
	}
	noLeftovers(t, rdb, "cr", g1, n)
	if vs := rdb.SMembers(ctx, VersionsKey("cr")).Val(); len(vs) != 1 || vs[0] != "1g2" {
		t.Errorf("versions set %v, want [1g2]", vs)
	}
}

// rebuildConfig returns the Config of the partitioned rebuild tests' runners
// by id: a one-second lease, short back-offs and the given batch size and
// retire delay.
func rebuildConfig(store eventstore.Store, rdb redis.UniversalClient, p Projection, batch int, retire time.Duration) func(id string) Config {
	return func(id string) Config {
		return Config{Store: store, Redis: rdb, Projection: p, ID: id, BatchSize: batch,
			LeaseTTL: time.Second, RetireDelay: retire, Logger: quietLogger(),
			MinBackoff: 5 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
	}
}

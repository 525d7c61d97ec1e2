package projection

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/query"
)

// TestForceRebuildUnderLiveQueries rebuilds the active version itself
// (RebuildOptions.Force) while events are appended and four readers query it
// in a loop. Generation 1 of v1 is built beside generation 0 and switched to:
// every response is a complete, consistent model that never goes back in
// time; the long-running projector of v1 does not stop but follows the new
// generation and goes on applying appends after the rebuild's runner has
// gone; generation 0 is removed; the final model equals a from-scratch build.
func TestForceRebuildUnderLiveQueries(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	store := memory.New()
	ctx := context.Background()
	appendTally(t, store, 0, 40_000)
	g0, g1 := query.Build{Version: 1}, query.Build{Version: 1, Generation: 1}

	projector := newRunner(t, Config{Store: store, Redis: rdb, Projection: tally("p", 1), Logger: quietLogger(),
		LeaseTTL: time.Second, RetireDelay: 200 * time.Millisecond})
	xp := startRunner(t, projector)
	head, _ := store.Head(ctx)
	waitFor(t, rdb, "p", head)

	app := startAppender(t, store, 40_000)
	rd := startReaders(t, rdb, "p", 4)
	started := time.Now()

	var first Progress
	var phases []Phase
	res, err := Rebuild(ctx, Config{Store: store, Redis: rdb, Projection: tally("p", 1), Logger: quietLogger(),
		RetireDelay: 200 * time.Millisecond, LeaseTTL: time.Second},
		RebuildOptions{Force: true, ProgressEvery: 20 * time.Millisecond, Progress: func(p Progress) {
			if len(phases) == 0 {
				first = p
			}
			if !slices.Contains(phases, p.Phase) {
				phases = append(phases, p.Phase)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	want := RebuildResult{Name: "p", Version: 1, Generation: 1, Previous: 1, PreviousGeneration: 0, Checkpoint: res.Checkpoint}
	if res != want {
		t.Fatalf("result %+v, want %+v", res, want)
	}
	if first.Generation != 1 || first.Phase != PhaseCatchingUp || first.Checkpoint.Commit != 0 {
		t.Errorf("first progress %+v: want generation 1 catching up from the start", first)
	}
	if !slices.Contains(phases, PhaseCatchingUp) || !slices.Contains(phases, PhaseDone) {
		t.Errorf("phases reported: %v", phases)
	}
	select {
	case <-xp.done:
		t.Fatalf("the projector stopped after the forced rebuild: %v", xp.err)
	default:
	}

	// The projector takes generation 1 over from the rebuild's runner and
	// keeps applying the appends that go on.
	waitUntil(t, 30*time.Second, "the projector to hold generation 1", func() bool {
		return holderOf(rdb, leaseKey("p", g1)) == projector.ID()
	})
	taken, err := query.ReadCheckpoint(ctx, rdb, "p", g1)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "the projector to apply appends to generation 1", func() bool {
		cp, err := query.ReadCheckpoint(ctx, rdb, "p", g1)
		return err == nil && taken.Before(cp) && holderOf(rdb, leaseKey("p", g1)) == projector.ID()
	})
	waitUntil(t, 30*time.Second, "queries on generation 1", func() bool { return rd.on(g1) > 200 || rd.failed.Load() == 4 })
	app.halt()
	if app.err != nil {
		t.Fatal(app.err)
	}
	head, _ = store.Head(ctx)
	v := waitFor(t, rdb, "p", head)
	for _, err := range rd.stop() {
		t.Errorf("query: %v", err)
	}
	elapsed := time.Since(started)
	t.Logf("%d queries in %v (%.0f/s): %d on generation 0, %d on generation 1; %d events appended meanwhile",
		rd.queries.Load(), elapsed.Round(time.Millisecond), float64(rd.queries.Load())/elapsed.Seconds(), rd.on(g0), rd.on(g1), app.n.Load())
	if rd.on(g0) == 0 || rd.on(g1) == 0 {
		t.Errorf("queries on generation 0 %d, on generation 1 %d: both must have served", rd.on(g0), rd.on(g1))
	}

	// Readers follow without knowing about generations.
	if v.Version != 1 || v.Generation != 1 || v.Key("applied") != "{el:p}:v1g1:applied" {
		t.Errorf("view %+v, key %s", v, v.Key("applied"))
	}
	waitUntil(t, 10*time.Second, "removal of generation 0", func() bool { return buildKeys(t, rdb, "p", g0) == 0 })
	if vs := rdb.SMembers(ctx, VersionsKey("p")).Val(); len(vs) != 1 || vs[0] != "1g1" {
		t.Errorf("versions set %v, want [1g1]", vs)
	}
	if n := rdb.SCard(ctx, RetiredKey("p")).Val(); n != 0 {
		t.Errorf("retired set has %d builds", n)
	}
	// The projector took the new generation over at the switch; it reports
	// running once it has seen that it stands at the head, which can be a
	// moment after its checkpoint got there.
	var st Status
	waitUntil(t, 10*time.Second, "the projector running on generation 1", func() bool {
		var err error
		st, err = projector.Status(ctx)
		return err == nil && st.Generation == 1 && st.State == StateRunning
	})
	if st.Version != 1 || st.Generation != 1 || !st.Active || st.ActiveGeneration != 1 || st.Holder != projector.ID() || st.State != StateRunning {
		t.Errorf("projector status %+v", st)
	}
	if rs, err := ReadStatus(ctx, rdb, "p", query.Build{}); err != nil || rs.Version != 1 || rs.Generation != 1 || !rs.Active {
		t.Errorf("ReadStatus of the active build: %+v, %v", rs, err)
	}
	got := dumpBuild(t, rdb, "p", g1)
	if d := diffModels(referenceModel(t, store, "p", 1, head), got); d != "" {
		t.Fatalf("rebuilt model differs from a from-scratch build:\n%s", d)
	}
	if err := xp.stop(); err != nil {
		t.Fatalf("projector: %v", err)
	}
}

// TestForceRebuildResumesAndGuards covers the edges of a forced rebuild: a
// generation left by a forced rebuild that stopped before its switch is
// resumed from its checkpoint rather than started over; a Rebuild without
// Force still leaves the active version alone; a runner of an older version
// still stops with ErrSuperseded rather than follow the new version.
func TestForceRebuildResumesAndGuards(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	store := memory.New()
	ctx := context.Background()
	head := appendTally(t, store, 0, 2000)
	g1 := query.Build{Version: 1, Generation: 1}
	x := startRunner(t, newRunner(t, Config{Store: store, Redis: rdb, Projection: tally("p", 1), Logger: quietLogger()}))
	waitFor(t, rdb, "p", head)
	_ = x.stop()

	res, err := Rebuild(ctx, Config{Store: store, Redis: rdb, Projection: tally("p", 1)}, RebuildOptions{})
	if err != nil || !res.AlreadyActive || res.Generation != 0 {
		t.Fatalf("Rebuild without Force of the active version: %+v, %v", res, err)
	}

	// A forced rebuild that got as far as the head and died before its switch.
	crashed := newRunner(t, Config{Store: store, Redis: rdb, Projection: tally("p", 1), Logger: quietLogger(), Activation: ActivateNever})
	crashed.pinned = &g1
	xc := startRunner(t, crashed)
	waitUntil(t, 30*time.Second, "the partial generation 1", func() bool {
		cp, err := query.ReadCheckpoint(ctx, rdb, "p", g1)
		return err == nil && !cp.Before(head)
	})
	_ = xc.stop()
	if v, err := query.Resolve(ctx, rdb, "p"); err != nil || v.Generation != 0 {
		t.Fatalf("active after the partial build: %+v, %v", v, err)
	}

	var first *Progress
	head = appendTally(t, store, 2000, 2100)
	res, err = Rebuild(ctx, Config{Store: store, Redis: rdb, Projection: tally("p", 1), Logger: quietLogger(), RetireDelay: time.Millisecond},
		RebuildOptions{Force: true, Progress: func(p Progress) {
			if first == nil {
				first = &p
			}
		}})
	if err != nil || res.Generation != 1 || res.PreviousGeneration != 0 {
		t.Fatalf("forced Rebuild: %+v, %v", res, err)
	}
	if first == nil || first.Generation != 1 || first.Checkpoint.Commit != 2000 {
		t.Fatalf("forced Rebuild did not resume generation 1 at 2000: first progress %+v", first)
	}
	waitFor(t, rdb, "p", head)
	if d := diffModels(referenceModel(t, store, "p", 1, head), dumpBuild(t, rdb, "p", g1)); d != "" {
		t.Fatalf("resumed generation differs from a from-scratch build:\n%s", d)
	}

	// v2 replaces v1 generation 1; a v1 runner then stops instead of following.
	if _, err := Rebuild(ctx, Config{Store: store, Redis: rdb, Projection: tally("p", 2), Logger: quietLogger(), RetireDelay: time.Millisecond},
		RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := buildKeys(t, rdb, "p", g1); n != 0 {
		t.Errorf("%d keys of v1 generation 1 left after the switch to v2", n)
	}
	old := newRunner(t, Config{Store: store, Redis: rdb, Projection: tally("p", 1), Logger: quietLogger()})
	if err := old.Run(ctx); !errors.Is(err, ErrSuperseded) {
		t.Fatalf("v1 runner with v2 active: %v, want ErrSuperseded", err)
	}
	if _, err := Rebuild(ctx, Config{Store: store, Redis: rdb, Projection: tally("p", 1)}, RebuildOptions{Force: true}); !errors.Is(err, ErrSuperseded) {
		t.Fatalf("forced Rebuild of v1 with v2 active: %v, want ErrSuperseded", err)
	}
}

// TestRebuildRestartStartsOver: a rebuild of v2 crashed after building part
// of the model with code that was then fixed (without a version bump).
// Resuming would keep what the buggy code wrote; RebuildOptions.Restart
// discards the partial build and starts from the beginning of the log, and
// refuses, touching nothing, while a runner still holds the build's lease.
func TestRebuildRestartStartsOver(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	store := memory.New()
	ctx := context.Background()
	head := appendTally(t, store, 0, 2000)
	v2 := query.Build{Version: 2}
	x := startRunner(t, newRunner(t, Config{Store: store, Redis: rdb, Projection: tally("p", 1), Logger: quietLogger()}))
	waitFor(t, rdb, "p", head)
	_ = x.stop()

	buggy := Define("p", 2, func(ctx context.Context, tx *Tx, rec eventstore.Record) error {
		tx.Pipe().HIncrBy(ctx, tx.Key("counts"), rec.StreamID, 7)
		tx.Pipe().Incr(ctx, tx.Key("applied"))
		return nil
	})
	xb := startRunner(t, newRunner(t, Config{Store: store, Redis: rdb, Projection: buggy, Logger: quietLogger(), Activation: ActivateNever}))
	waitUntil(t, 30*time.Second, "the partial v2", func() bool {
		cp, err := query.ReadCheckpoint(ctx, rdb, "p", v2)
		return err == nil && !cp.Before(head)
	})
	partial := dumpBuild(t, rdb, "p", v2)

	_, err := Rebuild(ctx, Config{Store: store, Redis: rdb, Projection: tally("p", 2), Logger: quietLogger()}, RebuildOptions{Restart: true})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("Restart while a runner holds v2: %v, want ErrBusy", err)
	}
	if d := diffModels(partial, dumpBuild(t, rdb, "p", v2)); d != "" {
		t.Fatalf("a refused Restart changed the partial build:\n%s", d)
	}
	_ = xb.stop() // the crash: its lease is released, its keys stay
	if d := diffModels(referenceModel(t, store, "p", 2, head), dumpBuild(t, rdb, "p", v2)); d == "" {
		t.Fatal("the buggy partial build equals a correct one: the test shows nothing")
	}

	head = appendTally(t, store, 2000, 2100)
	var first *Progress
	res, err := Rebuild(ctx, Config{Store: store, Redis: rdb, Projection: tally("p", 2), Logger: quietLogger(), RetireDelay: time.Millisecond},
		RebuildOptions{Restart: true, Progress: func(p Progress) {
			if first == nil {
				first = &p
			}
		}})
	if err != nil || res.Version != 2 || res.Previous != 1 {
		t.Fatalf("Rebuild with Restart: %+v, %v", res, err)
	}
	if first == nil || !first.Checkpoint.IsZero() {
		t.Fatalf("Rebuild with Restart resumed instead of starting over: first progress %+v", first)
	}
	waitFor(t, rdb, "p", head)
	if d := diffModels(referenceModel(t, store, "p", 2, head), dumpBuild(t, rdb, "p", v2)); d != "" {
		t.Fatalf("v2 after Restart differs from a from-scratch build:\n%s", d)
	}
}

package projection

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/query"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func newRunner(t testing.TB, cfg Config) *Runner {
	t.Helper()
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = time.Second
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 5 * time.Millisecond
		cfg.MaxBackoff = 100 * time.Millisecond
	}
	r, err := NewRunner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRunnerBatchesAppliesOnceAndSkipsUnknown(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	store := memory.New()
	ctx := context.Background()
	const n = 3000
	appendEvents(t, store, 0, n/2) // catch-up part

	reg := prometheus.NewRegistry()
	r := newRunner(t, Config{Store: store, Redis: rdb, Projection: counts("c"), BatchSize: 200, Registerer: reg})
	if _, err := query.Resolve(ctx, rdb, "c"); !errors.Is(err, query.ErrNotReady) {
		t.Fatalf("before the first run: Resolve = %v, want ErrNotReady", err)
	}
	startRunner(t, r)
	last := appendEvents(t, store, n/2, n) // live part
	v := waitFor(t, rdb, "c", last)
	if v.Version != 1 {
		t.Fatalf("active version %d, want 1", v.Version)
	}
	if d := diffModels(expected("c", n), dumpModel(t, rdb, "c")); d != "" {
		t.Fatalf("model differs:\n%s", d)
	}

	other := 0
	for i := range n {
		if event(i).Type == "other" {
			other++
		}
	}
	m := r.m
	if got := testutil.ToFloat64(m.skipped); got != float64(other) {
		t.Errorf("skipped = %v, want %d", got, other)
	}
	if got := testutil.ToFloat64(m.applied); got != float64(n-other) {
		t.Errorf("applied = %v, want %d", got, n-other)
	}
	batches := testutil.ToFloat64(m.batches)
	if batches < n/200 || batches >= n {
		t.Errorf("batches = %v: want between %d (full batches) and %d (one per record)", batches, n/200, n)
	}

	// Status, from the runner and from Redis alone.
	waitUntil(t, 10*time.Second, "status to show the head", func() bool {
		s, err := ReadStatus(ctx, rdb, "c", query.Build{})
		return err == nil && s.Head == last
	})
	for _, get := range []func() (Status, error){
		func() (Status, error) { return r.Status(ctx) },
		func() (Status, error) { return ReadStatus(ctx, rdb, "c", query.Version(1)) },
	} {
		s, err := get()
		if err != nil {
			t.Fatal(err)
		}
		if s.Checkpoint != last || s.Head != last || s.LagEvents != 0 || s.LagSeconds != 0 ||
			s.State != StateRunning || s.Holder != r.ID() || !s.Active || s.ActiveVersion != 1 || s.DeadLetters != 0 {
			t.Errorf("status = %+v", s)
		}
	}
	names, _ := rdb.SMembers(ctx, ProjectionsKey).Result()
	if len(names) != 1 || names[0] != "c" {
		t.Errorf("projections set = %v", names)
	}

	// Metrics are registered on the caller's registry only.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	for _, want := range []string{"eventline_projection_events_applied_total", "eventline_projection_events_skipped_total",
		"eventline_projection_batches_total", "eventline_projection_batch_duration_seconds",
		"eventline_projection_lag_events", "eventline_projection_lag_seconds", "eventline_projection_state"} {
		if !got[want] {
			t.Errorf("metric %s not registered", want)
		}
	}
	if testutil.ToFloat64(m.state.WithLabelValues("c", "1", string(StateRunning))) != 1 {
		t.Error("state gauge does not show running")
	}
}

func TestNotActiveUntilCaughtUp(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	store := memory.New()
	ctx := context.Background()
	target := appendEvents(t, store, 0, 1000)

	r := newRunner(t, Config{Store: store, Redis: rdb, Projection: counts("c"), BatchSize: 100})
	var mu sync.Mutex
	var seen []string // "<checkpoint>:<active or ->" after each batch
	r.afterCommit = func(b []eventstore.Record) {
		active, err := query.Resolve(ctx, rdb, "c")
		s := b[len(b)-1].Position.String() + ":"
		if err == nil {
			s += "active"
		} else if errors.Is(err, query.ErrNotReady) {
			s += "-"
		} else {
			s += err.Error()
		}
		_ = active
		mu.Lock()
		seen = append(seen, s)
		mu.Unlock()
	}
	startRunner(t, r)
	waitUntil(t, 10*time.Second, "the projection to become active", func() bool {
		_, err := query.Resolve(ctx, rdb, "c")
		return err == nil
	})
	if cp := checkpointOf(rdb, "c"); cp != target {
		t.Fatalf("active at checkpoint %s, want %s (the head at start)", cp, target)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, s := range seen {
		// Activation happens after the commit of the batch reaching the target,
		// so every batch but possibly the last one must see "not ready".
		if !strings.HasSuffix(s, ":-") && !(i == len(seen)-1 && strings.HasPrefix(s, target.String()+":")) {
			t.Errorf("batch %d: %s: active before catching up", i, s)
		}
	}
}

func TestPoisonStop(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	store := memory.New()
	ctx := context.Background()
	appendEvents(t, store, 0, 50)
	res, err := store.Append(ctx, "bad", eventstore.Any, eventstore.Event{Type: "poison"})
	if err != nil {
		t.Fatal(err)
	}
	appendEvents(t, store, 50, 100)

	r := newRunner(t, Config{Store: store, Redis: rdb, Projection: counts("c"), MaxAttempts: 2})
	x := startRunner(t, r)
	<-x.done
	if !errors.Is(x.err, ErrStuck) || !strings.Contains(x.err.Error(), "cannot apply poison") {
		t.Fatalf("Run = %v, want ErrStuck with the projection's error", x.err)
	}
	before := eventstore.SeqPosition(res.Position.Commit - 1)
	if cp := checkpointOf(rdb, "c"); cp != before {
		t.Fatalf("checkpoint %s, want %s (just before the poison record)", cp, before)
	}
	if d := diffModels(expected("c", 50), dumpModel(t, rdb, "c")); d != "" {
		t.Fatalf("model differs:\n%s", d)
	}
	s, err := ReadStatus(ctx, rdb, "c", query.Version(1))
	if err != nil {
		t.Fatal(err)
	}
	if s.State != StateStopped || s.StuckAt != res.Position.String() || !strings.Contains(s.Error, "cannot apply poison") ||
		s.Checkpoint != before || s.LagEvents != 51 {
		t.Fatalf("status = %+v", s)
	}
}

func TestPoisonDeadLetter(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	store := memory.New()
	ctx := context.Background()
	appendEvents(t, store, 0, 50)
	res, err := store.Append(ctx, "bad", eventstore.Any, eventstore.Event{Type: "poison"})
	if err != nil {
		t.Fatal(err)
	}
	// The runner carries on with records after the poison, in the same batch
	// and in later ones, whose positions are shifted by one; the expected
	// model is the 100 good events either way.
	appendEvents(t, store, 50, 100)

	reg := prometheus.NewRegistry()
	r := newRunner(t, Config{Store: store, Redis: rdb, Projection: counts("c"), OnPoison: DeadLetter, Registerer: reg})
	startRunner(t, r)
	head, _ := store.Head(ctx)
	waitFor(t, rdb, "c", head)
	if d := diffModels(expected("c", 100), dumpModel(t, rdb, "c")); d != "" {
		t.Fatalf("model differs:\n%s", d)
	}
	items, err := rdb.LRange(ctx, DeadLetterKey("c", query.Version(1)), 0, -1).Result()
	if err != nil || len(items) != 1 {
		t.Fatalf("dead letters = %v, %v; want one", items, err)
	}
	var d DeadLetterEntry
	if err := json.Unmarshal([]byte(items[0]), &d); err != nil {
		t.Fatal(err)
	}
	if d.Position != res.Position.String() || d.StreamID != "bad" || d.Type != "poison" || !strings.Contains(d.Error, "cannot apply poison") {
		t.Fatalf("dead letter = %+v", d)
	}
	s, err := r.Status(ctx)
	if err != nil || s.DeadLetters != 1 || s.State != StateRunning {
		t.Fatalf("status = %+v, %v", s, err)
	}
	if testutil.ToFloat64(r.m.deadLetters) != 1 {
		t.Fatal("dead letter metric not 1")
	}
}

func TestRedisDownAndBack(t *testing.T) {
	srv := redistest.StartWith(t, redistest.Options{Persistent: true})
	if srv.Kind != redistest.KindProcess {
		t.Skipf("needs a private redis-server, got %s", srv.Kind)
	}
	rdb := srv.Client(t)
	store := memory.New()
	ctx := context.Background()
	appendEvents(t, store, 0, 500)
	r := newRunner(t, Config{Store: store, Redis: rdb, Projection: counts("c"), BatchSize: 50})
	startRunner(t, r)
	n := 500
	for round := range 3 {
		waitUntil(t, 10*time.Second, "progress", func() bool { return checkpointOf(rdb, "c").Commit > 0 })
		srv.Kill()
		waitUntil(t, 10*time.Second, "the runner to notice", func() bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.st.State == StateRetrying
		})
		appendEvents(t, store, n, n+300) // commands go on while Redis is down
		n += 300
		srv.Restart()
		t.Logf("round %d: redis restarted", round)
	}
	head, _ := store.Head(ctx)
	waitFor(t, rdb, "c", head)
	if d := diffModels(expected("c", n), dumpModel(t, rdb, "c")); d != "" {
		t.Fatalf("model differs:\n%s", d)
	}
	if testutil.ToFloat64(r.m.retries) == 0 {
		t.Fatal("retries metric is 0")
	}
}

func TestWaitFor(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	store := memory.New()
	ctx := context.Background()
	// Before any runner: a zero position fails at once, another waits for
	// the first build, bounded by ctx.
	if _, err := query.WaitFor(ctx, rdb, "c", eventstore.Start); !errors.Is(err, query.ErrNotReady) {
		t.Fatalf("WaitFor(Start) before any runner = %v, want ErrNotReady", err)
	}
	short0, cancel0 := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel0()
	if _, err := query.WaitFor(short0, rdb, "c", eventstore.SeqPosition(1)); !errors.Is(err, query.ErrNotReady) ||
		!errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor before any runner = %v, want ErrNotReady and deadline exceeded", err)
	}
	first, err := store.Append(ctx, "s-0", eventstore.Any, event(0))
	if err != nil {
		t.Fatal(err)
	}
	type waited struct {
		v   *query.View
		err error
	}
	early := make(chan waited, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		v, err := query.WaitFor(wctx, rdb, "c", first.Position)
		early <- waited{v, err}
	}()
	r := newRunner(t, Config{Store: store, Redis: rdb, Projection: counts("c")})
	startRunner(t, r)
	if w := <-early; w.err != nil {
		t.Fatalf("WaitFor started before the runner: %v", w.err)
	} else if cp, err := w.v.Checkpoint(ctx); err != nil || cp.Before(first.Position) {
		t.Fatalf("WaitFor started before the runner returned at checkpoint %v (%v), want ≥ %v", cp, err, first.Position)
	}
	waitUntil(t, 10*time.Second, "activation", func() bool {
		_, err := query.Resolve(ctx, rdb, "c")
		return err == nil
	})
	// Without a position, never waits.
	if v, err := query.WaitFor(ctx, rdb, "c", eventstore.Start); err != nil || v.Version != 1 {
		t.Fatalf("WaitFor(Start) = %v, %v", v, err)
	}
	// A position not reached yet: bounded by ctx.
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if _, err := query.WaitFor(short, rdb, "c", eventstore.SeqPosition(10)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor(unreached) = %v, want deadline exceeded", err)
	}
	// Read your writes: wait for the append's position, then read.
	res, err := store.Append(ctx, "s-1", eventstore.Any, event(0))
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel2 := context.WithTimeout(ctx, 10*time.Second)
	defer cancel2()
	v, err := query.WaitFor(wctx, rdb, "c", res.Position)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		N int `redis:"s-1"`
	}
	if err := v.HGetAll(ctx, &c, "counts"); err != nil || c.N != 1 {
		t.Fatalf("after WaitFor: counts = %+v, %v", c, err)
	}
}

func TestConfigValidate(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	store := memory.New()
	for _, p := range []Projection{Define("Bad Name", 1, nil), Define("ok", 0, nil), Define("", 1, nil)} {
		if _, err := NewRunner(Config{Store: store, Redis: rdb, Projection: p}); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewRunner(%q v%d) = %v, want ErrInvalidConfig", p.Name(), p.Version(), err)
		}
	}
	if _, err := NewRunner(Config{Redis: rdb, Projection: counts("c")}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New without store = %v", err)
	}
}

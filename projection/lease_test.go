package projection

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/query"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestLeaseTakeoverAndFencing runs three runners of one projection. The
// holder crashes (its Run ends without releasing the lease); another takes
// over once the lease expires. Then the lease is stolen between a batch's
// lease check and its EXEC, the worst moment: the batch must be refused with
// nothing landed, and counted as fenced.
func TestLeaseTakeoverAndFencing(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	intruder := srv.Client(t)
	store := memory.New()
	ctx := context.Background()
	lk := leaseKey("c", query.Build{Version: 1})

	var steal atomic.Bool
	var stolen sync.Once
	stoleAt := make(chan stealSnapshot, 1)
	runners := map[string]*Runner{}
	running := map[string]*running{}
	for _, id := range []string{"r1", "r2", "r3"} {
		r := newRunner(t, Config{Store: store, Redis: rdb, Projection: counts("c"), ID: id,
			LeaseTTL: 300 * time.Millisecond, Registerer: prometheus.NewRegistry(), BatchSize: 50})
		r.noRelease = true // a crash releases nothing
		r.beforeExec = func() {
			if !steal.Load() {
				return
			}
			stolen.Do(func() {
				m, err := dump(intruder, "c")
				stoleAt <- stealSnapshot{runner: id, checkpoint: checkpointOf(intruder, "c"), model: m, err: err}
				stealLease(t, intruder, lk, "intruder")
			})
		}
		runners[id] = r
	}
	for id, r := range runners {
		running[id] = startRunner(t, r)
	}

	last := appendEvents(t, store, 0, 500)
	waitFor(t, rdb, "c", last)
	first := holderOf(rdb, lk)
	if runners[first] == nil {
		t.Fatalf("lease holder %q is none of the runners", first)
	}
	crashed := time.Now()
	_ = running[first].stop()

	last = appendEvents(t, store, 500, 1000)
	waitFor(t, rdb, "c", last)
	second := holderOf(rdb, lk)
	if second == first || runners[second] == nil {
		t.Fatalf("after the crash of %s the lease is held by %q", first, second)
	}
	t.Logf("%s crashed; %s took over and caught up within %v (lease TTL 300ms)", first, second, time.Since(crashed))
	if d := diffModels(expected("c", 1000), dumpModel(t, rdb, "c")); d != "" {
		t.Fatalf("model after takeover differs:\n%s", d)
	}

	// Steal the lease between the next batch's check and its EXEC.
	steal.Store(true)
	appendEvents(t, store, 1000, 1100)
	snap := <-stoleAt
	if snap.err != nil {
		t.Fatal(snap.err)
	}
	victim := runners[snap.runner]
	waitUntil(t, 10*time.Second, "the batch to be refused", func() bool { return testutil.ToFloat64(victim.m.fenced) >= 1 })
	if cp := checkpointOf(rdb, "c"); cp != snap.checkpoint {
		t.Fatalf("checkpoint moved from %s to %s under a stolen lease", snap.checkpoint, cp)
	}
	if d := diffModels(snap.model, dumpModel(t, rdb, "c")); d != "" {
		t.Fatalf("a write landed under a stolen lease:\n%s", d)
	}
	if h := holderOf(rdb, lk); h != "intruder" {
		t.Fatalf("lease is %q, want it still held by the intruder", h)
	}

	// The intruder goes away; a runner takes over and finishes exactly.
	steal.Store(false)
	rdb.Del(ctx, lk)
	head, _ := store.Head(ctx)
	waitFor(t, rdb, "c", head)
	if d := diffModels(expected("c", 1100), dumpModel(t, rdb, "c")); d != "" {
		t.Fatalf("final model differs:\n%s", d)
	}
}

type stealSnapshot struct {
	runner     string
	checkpoint eventstore.Position
	model      map[string]string
	err        error
}

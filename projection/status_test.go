package projection

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/query"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

func stateOf(r *Runner) State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st.State
}

// TestStatusWritesAreFenced: only the lease holder writes a build's status
// hash. A standby that stops, and a holder that lost its lease and has not
// noticed yet, leave the holder's status alone.
func TestStatusWritesAreFenced(t *testing.T) {
	b := query.Build{Version: 1}
	sk, lk := statusKey("c", b), leaseKey("c", b)
	config := func(store *memory.Store, rdb *redis.Client, id string, statusEvery time.Duration) Config {
		return Config{Store: store, Redis: rdb, Projection: counts("c"), ID: id, LeaseTTL: 3 * time.Second,
			StatusEvery: statusEvery, Registerer: prometheus.NewRegistry(), Logger: quietLogger()}
	}
	ctx := context.Background()

	t.Run("a standby that stops", func(t *testing.T) {
		rdb := redistest.Start(t).Client(t)
		store := memory.New()
		// The holder writes its status at the start of its session and when
		// it has caught up, then not for a minute.
		holder := newRunner(t, config(store, rdb, "holder", time.Minute))
		startRunner(t, holder)
		last := appendEvents(t, store, 0, 50)
		waitFor(t, rdb, "c", last)
		waitUntil(t, 10*time.Second, "the holder's status", func() bool { return rdb.HGet(ctx, sk, fHolder).Val() == "holder" })
		standby := newRunner(t, config(store, rdb, "standby", time.Minute))
		x := startRunner(t, standby)
		waitUntil(t, 10*time.Second, "the standby to stand by", func() bool { return stateOf(standby) == StateStandby })
		if err := x.stop(); err != nil {
			t.Fatal(err)
		}
		if st := rdb.HGetAll(ctx, sk).Val(); st[fHolder] != "holder" || st[fState] != string(StateRunning) {
			t.Fatalf("status hash after a standby stopped: holder %q state %q, want the holder's (holder, running)", st[fHolder], st[fState])
		}
	})

	t.Run("a holder that lost its lease", func(t *testing.T) {
		rdb := redistest.Start(t).Client(t)
		store := memory.New()
		// It writes its status every 10ms but renews (and so learns it lost
		// the lease) only every second.
		r := newRunner(t, config(store, rdb, "old", 10*time.Millisecond))
		x := startRunner(t, r)
		last := appendEvents(t, store, 0, 50)
		waitFor(t, rdb, "c", last)
		// The lease passes to another runner, as after a pause of the old
		// holder longer than the TTL; the new holder writes its status.
		stealLease(t, rdb, lk, "new")
		rdb.HSet(ctx, sk, fHolder, "new", fState, string(StateRunning))
		waitUntil(t, 10*time.Second, "the old holder to notice", func() bool { return stateOf(r) == StateStandby })
		if h := rdb.HGet(ctx, sk, fHolder).Val(); h != "new" {
			t.Fatalf("status hash holder %q after the lease passed to \"new\": the old holder wrote over it", h)
		}
		if err := x.stop(); err != nil {
			t.Fatal(err)
		}
		if h := rdb.HGet(ctx, sk, fHolder).Val(); h != "new" {
			t.Fatalf("status hash holder %q after the old holder stopped, want \"new\"", h)
		}
	})
}

// TestNoStatusLeftByARunnerThatNeverRan: a runner that never held a lease
// (its process failed at start-up), or held one but stopped before it
// applied anything, leaves no status entry behind for the status command to
// list as a stopped build with full lag.
func TestNoStatusLeftByARunnerThatNeverRan(t *testing.T) {
	ctx := context.Background()
	keys := func(rdb *redis.Client) []string {
		ks := rdb.Keys(ctx, "*").Val()
		slices.Sort(ks)
		return ks
	}

	t.Run("failed at start-up", func(t *testing.T) {
		rdb := redistest.Start(t).Client(t)
		store := memory.New()
		appendEvents(t, store, 0, 10)
		// Generation 1 of v1 is active (a forced rebuild made it).
		rdb.Set(ctx, query.ActiveKey("c"), "1g1", 0)
		rdb.SAdd(ctx, VersionsKey("c"), "1g1")
		before := keys(rdb)
		r := newRunner(t, Config{Store: store, Redis: rdb, Projection: counts("c"), Logger: quietLogger(), Registerer: prometheus.NewRegistry()})
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := r.Run(cctx); err != nil {
			t.Fatal(err)
		}
		if after := keys(rdb); !slices.Equal(before, after) {
			t.Fatalf("a runner that never ran changed the keys from %q to %q (builds %q)", before, after, rdb.SMembers(ctx, VersionsKey("c")).Val())
		}
	})

	t.Run("stopped before it applied anything", func(t *testing.T) {
		rdb := redistest.Start(t).Client(t)
		store := memory.New() // empty: nothing to apply
		r := newRunner(t, Config{Store: store, Redis: rdb, Projection: counts("c"), Activation: ActivateNever,
			Logger: quietLogger(), Registerer: prometheus.NewRegistry()})
		x := startRunner(t, r)
		waitUntil(t, 10*time.Second, "the runner to run", func() bool { return stateOf(r) == StateRunning })
		if err := x.stop(); err != nil {
			t.Fatal(err)
		}
		if n := rdb.Exists(ctx, statusKey("c", query.Build{Version: 1})).Val(); n != 0 {
			t.Errorf("the status of a build nothing was applied to outlives its runner: %v", rdb.HGetAll(ctx, statusKey("c", query.Build{Version: 1})).Val())
		}
		if bs := rdb.SMembers(ctx, VersionsKey("c")).Val(); len(bs) != 0 {
			t.Errorf("builds listed after the only runner stopped having applied nothing: %q", bs)
		}
	})
}

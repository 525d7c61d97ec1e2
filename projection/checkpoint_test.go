package projection

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/query"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// TestLostCheckpointIsNotAppliedTwice: when a build's checkpoint disappears
// (evicted, deleted by hand, lost in a failover) while its model keys
// remain, a runner must not apply the log from the start over them, which
// would count every record twice. It stops with ErrCheckpointLost, naming
// the projection and the fix, and leaves the model as it was.
func TestLostCheckpointIsNotAppliedTwice(t *testing.T) {
	ctx := context.Background()
	config := func(store *memory.Store, rdb *redis.Client, a Activation) Config {
		return Config{Store: store, Redis: rdb, Projection: counts("c"), Activation: a, LeaseTTL: time.Second,
			Logger: quietLogger(), Registerer: prometheus.NewRegistry()}
	}
	for _, tc := range []struct {
		name       string
		activation Activation
		fix        string
	}{
		{"active build", ActivateIfNewer, "replay --force c"},
		{"build not yet active", ActivateNever, "replay --restart c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb := redistest.Start(t).Client(t)
			store := memory.New()
			last := appendEvents(t, store, 0, 300)
			x := startRunner(t, newRunner(t, config(store, rdb, tc.activation)))
			waitUntil(t, 30*time.Second, "the build to reach the head", func() bool { return checkpointOf(rdb, "c") == last })
			if tc.activation != ActivateNever {
				waitFor(t, rdb, "c", last)
			}
			if err := x.stop(); err != nil {
				t.Fatal(err)
			}
			model := dumpModel(t, rdb, "c")
			if d := diffModels(expected("c", 300), model); d != "" {
				t.Fatalf("model before the loss differs:\n%s", d)
			}

			rdb.Del(ctx, query.CheckpointKey("c", query.Version(1)))
			x = startRunner(t, newRunner(t, config(store, rdb, tc.activation)))
			waitUntil(t, 30*time.Second, "the runner to stop, or to reach the head again", func() bool {
				select {
				case <-x.done:
					return true
				default:
					return checkpointOf(rdb, "c") == last
				}
			})
			err := x.stop()
			if d := diffModels(model, dumpModel(t, rdb, "c")); d != "" {
				t.Fatalf("the runner applied the log again over the model whose checkpoint was lost:\n%s", d)
			}
			if !errors.Is(err, ErrCheckpointLost) {
				t.Fatalf("Run: %v, want ErrCheckpointLost", err)
			}
			for _, want := range []string{"c v1", tc.fix} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
			st, serr := ReadStatus(ctx, rdb, "c", query.Build{Version: 1})
			if serr != nil {
				t.Fatal(serr)
			}
			if st.State != StateStopped || !strings.Contains(st.Error, "checkpoint") {
				t.Errorf("status after the stop: state %q error %q, want stopped with the reason", st.State, st.Error)
			}

			// The fix the error names repairs the projection.
			opts := RebuildOptions{Force: true}
			if tc.activation == ActivateNever {
				opts = RebuildOptions{Restart: true}
			}
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if _, err := Rebuild(rctx, Config{Store: store, Redis: rdb, Projection: counts("c"), LeaseTTL: time.Second,
				RetireDelay: time.Millisecond, Logger: quietLogger(), Registerer: prometheus.NewRegistry()}, opts); err != nil {
				t.Fatalf("the fix (Rebuild %+v): %v", opts, err)
			}
			v := waitFor(t, rdb, "c", last)
			if got, want := rdb.Get(ctx, v.Key("total")).Val(), expected("c", 300)[query.Key("c", query.Version(1), "total")]; got != want {
				t.Errorf("total after the fix: %s, want %s", got, want)
			}
		})
	}

	// What the status of an earlier session leaves (its status hash, a lease
	// that expired) is not a model: a build with nothing else starts from the
	// beginning.
	t.Run("a build with only bookkeeping starts", func(t *testing.T) {
		rdb := redistest.Start(t).Client(t)
		store := memory.New()
		last := appendEvents(t, store, 0, 100)
		rdb.HSet(ctx, statusKey("c", query.Build{Version: 1}), fState, string(StateCatchingUp), fHolder, "crashed")
		startRunner(t, newRunner(t, config(store, rdb, ActivateIfNewer)))
		waitFor(t, rdb, "c", last)
		if d := diffModels(expected("c", 100), dumpModel(t, rdb, "c")); d != "" {
			t.Fatalf("model differs:\n%s", d)
		}
	})
}

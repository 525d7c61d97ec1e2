package query_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/query"
	"github.com/eventline/eventline/redisurl"
)

// TestClusterWatcherWakesAcrossNodes runs the Watcher on a Redis Cluster:
// its one pattern subscription lives on one node, while the projections'
// commits are published on the masters of their own slots (PUBLISH is
// broadcast over the cluster bus). Waiters of projections on every master
// are woken by the commit alone (the fallback poll is off), also after the
// node holding the subscription was killed and its replica took over.
func TestClusterWatcherWakesAcrossNodes(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, ReplicasPerMaster: 1})
	rdb, err := redisurl.Open(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	names := []string{"carts", "orders", "customers", "products", "leaderboard", "eventlog"}
	masters := map[int]bool{}
	for _, n := range names {
		masters[c.MasterOf(query.ActiveKey(n))] = true
		if err := rdb.Set(ctx, query.ActiveKey(n), "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
		commit(t, rdb, n, query.Version(1), 10)
	}
	if len(masters) < 2 {
		t.Fatalf("the projections' slots are on %d master(s); the test needs several", len(masters))
	}
	w := newWatcher(t, rdb, query.WatcherConfig{FallbackPoll: noFallback})

	round := func(at uint64) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		done := make(chan error, len(names))
		for _, n := range names {
			go func() {
				v, err := w.WaitFor(wctx, n, eventstore.SeqPosition(at))
				if err == nil {
					var cp eventstore.Position
					if cp, err = v.Checkpoint(wctx); err == nil && cp.Before(eventstore.SeqPosition(at)) {
						t.Errorf("%s woken at %s, before %d", n, cp, at)
					}
				}
				done <- err
			}()
		}
		eventually(t, "the waiters to register", func() bool { return w.Waiting() == len(names) && query.Settled(w) })
		for _, n := range names {
			commitRetrying(t, wctx, rdb, n, at)
		}
		for range names {
			if err := <-done; err != nil {
				t.Fatalf("waiter not woken (fallback poll %v): %v", noFallback, err)
			}
		}
	}
	round(11)
	if n := w.Stats().Notifications; n < uint64(len(names)) {
		t.Fatalf("%d notifications for %d commits", n, len(names))
	}

	// The subscription's node: the master of the pattern's hash slot.
	sub := c.MasterOf("{el:*}:commits")
	t.Logf("killing node %d, which holds the Watcher's subscription", sub)
	c.WaitReplicated(sub) // the active keys and checkpoints it holds survive the kill
	c.Kill(sub)
	c.WaitHealthy()
	round(12)
}

// commitRetrying is commit, retried while the cluster client still learns
// of a failover.
func commitRetrying(t *testing.T, ctx context.Context, rdb redis.UniversalClient, name string, pos uint64) {
	t.Helper()
	p := eventstore.SeqPosition(pos).String()
	for {
		_, err := rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.HSet(ctx, query.CheckpointKey(name, query.Version(1)), query.FieldPosition, p)
			pipe.Publish(ctx, query.CommitChannel(name), query.CommitMessage(query.Version(1), p))
			return nil
		})
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("commit %s at %d: %v", name, pos, err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval while the client reloads the layout
	}
}

// TestClusterCoalescerReadsAcrossSlots reads, concurrently and through one
// Coalescer, keys of twenty hash tags spread over three masters: a shared
// MULTI/EXEC cannot span slots on a cluster, so every read must still
// succeed and see its own key's value.
func TestClusterCoalescerReadsAcrossSlots(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3})
	rdb, err := redisurl.Open(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	const tags = 20
	key := func(i int) string { return "{el:t" + strconv.Itoa(i) + "}:v1:x" }
	for i := range tags {
		if err := rdb.Set(ctx, key(i), strconv.Itoa(i), 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	co := query.NewCoalescer(rdb)
	t.Cleanup(func() { _ = co.Close() })
	cl := co.Client()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for g := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			i := g % tags
			var get *redis.StringCmd
			if _, err := cl.TxPipelined(ctx, func(p redis.Pipeliner) error {
				get = p.Get(ctx, key(i))
				return nil
			}); err != nil {
				errs <- err
				return
			}
			if get.Val() != strconv.Itoa(i) {
				errs <- fmt.Errorf("%s: got %q", key(i), get.Val())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

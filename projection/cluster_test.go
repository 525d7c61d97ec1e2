package projection

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/query"
	"github.com/eventline/eventline/redisurl"
)

// The tests of this file run the runner on a real Redis Cluster (3 masters,
// one replica each), connected as a role connects: through the cluster URL.

func clusterClient(t testing.TB, c *redistest.Cluster) redis.UniversalClient {
	t.Helper()
	rdb, err := redisurl.Open(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// waitProgress waits until the checkpoint of name has moved past from.
func waitProgress(t testing.TB, rdb redis.UniversalClient, name string, d time.Duration, what string) {
	t.Helper()
	from := checkpointOf(rdb, name)
	waitUntil(t, d, what, func() bool { return from.Before(checkpointOf(rdb, name)) })
}

// finish halts the appender, waits until the model reached the head and
// compares it, key for key, with the model computed in Go.
func finish(t testing.TB, rdb redis.UniversalClient, store eventstore.Store, a *liveAppender, name string) {
	t.Helper()
	a.halt()
	if a.err != nil {
		t.Fatal(a.err)
	}
	head, err := store.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, rdb, name, head)
	n := int(a.n.Load())
	if d := diffModels(expected(name, n), dumpModel(t, rdb, name)); d != "" {
		t.Fatalf("model of %d events differs from the fold:\n%s", n, d)
	}
	t.Logf("%d events applied exactly once", n)
}

// TestClusterRunnersTakeOverExactlyOnce runs two runners of one projection
// on a cluster under a steady flow of events: the holder stops and the
// standby takes over, then a thief's lease fences the new holder (its WATCHed
// batch is refused) until released. The model equals the fold of the log,
// key for key: nothing lost, nothing applied twice.
func TestClusterRunnersTakeOverExactlyOnce(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3})
	rdb := clusterClient(t, c)
	store := memory.New()
	a := startSteadyAppender(t, store)
	cfg := func(id string) Config {
		return Config{Store: store, Redis: rdb, Projection: counts("c"), ID: id, BatchSize: 50, Logger: quietLogger()}
	}
	x1 := startRunner(t, newRunner(t, cfg("one")))
	waitProgress(t, rdb, "c", 30*time.Second, "the first runner's batches")
	x2 := startRunner(t, newRunner(t, cfg("two")))
	lk := leaseKey("c", query.Version(1))
	waitUntil(t, 30*time.Second, "runner one to hold the lease", func() bool { return holderOf(rdb, lk) == "one" })
	if err := x1.stop(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "runner two to take over", func() bool { return holderOf(rdb, lk) == "two" })
	waitProgress(t, rdb, "c", 30*time.Second, "the second runner's batches")

	stealLease(t, rdb, lk, "thief")
	// While the thief holds the lease nothing is applied; a batch under
	// way when it came is refused by its WATCH. Then the thief lets go.
	if err := rdb.HDel(context.Background(), lk, "owner", "expires").Err(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "runner two to take the lease back", func() bool { return holderOf(rdb, lk) == "two" })
	waitProgress(t, rdb, "c", 30*time.Second, "batches after the theft")
	finish(t, rdb, store, a, "c")
	_ = x2.stop()
}

// TestClusterFailoverExactlyOnce applies a steady flow of events while the
// master holding the projection's slot is killed (its replica takes over),
// comes back as a replica, and is then made master again by CLUSTER
// FAILOVER. The runner finds the new master by itself each time, and the
// final model equals the fold of the log: exactly once across failovers.
func TestClusterFailoverExactlyOnce(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, ReplicasPerMaster: 1})
	rdb := clusterClient(t, c)
	store := memory.New()
	a := startSteadyAppender(t, store)
	r := newRunner(t, Config{Store: store, Redis: rdb, Projection: counts("c"), ID: "runner", BatchSize: 50,
		LeaseTTL: 2 * time.Second, Logger: quietLogger()})
	x := startRunner(t, r)
	waitProgress(t, rdb, "c", 30*time.Second, "the runner's first batches")

	key := query.ActiveKey("c")
	m := c.MasterOf(key)
	replica := c.ReplicaOf(m)
	t.Logf("killing node %d, master of %s; node %d takes over", m, key, replica)
	c.Kill(m)
	c.WaitHealthy()
	if got := c.MasterOf(key); got != replica {
		t.Fatalf("after the kill, node %d masters %s, want %d", got, key, replica)
	}
	waitProgress(t, rdb, "c", time.Minute, "batches on the promoted replica")

	c.Restart(m)
	t.Logf("node %d is back as a replica; CLUSTER FAILOVER on it", m)
	c.Failover(m)
	waitProgress(t, rdb, "c", time.Minute, "batches after CLUSTER FAILOVER")
	finish(t, rdb, store, a, "c")
	if err := x.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestClusterNewVersionSwitches runs a blue/green rebuild on a cluster: a
// v2 runner builds beside v1 and switches, the v1 runner steps down, v1's
// keys are removed, and an explicit Rebuild to v3 does the same again. The
// eviction check finds an evicting master among the cluster's.
func TestClusterNewVersionSwitches(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3})
	rdb := clusterClient(t, c)
	store := memory.New()
	ctx := context.Background()

	// The eviction check reads every master: one evicting master is found.
	if err := CheckEvictionPolicy(ctx, rdb); err != nil {
		t.Fatalf("CheckEvictionPolicy on a noeviction cluster: %v", err)
	}
	node := redis.NewClient(&redis.Options{Addr: c.Addrs[2]})
	defer node.Close()
	if err := node.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	if err := CheckEvictionPolicy(ctx, rdb); !errors.Is(err, ErrEvictingPolicy) {
		t.Fatalf("CheckEvictionPolicy with node 2 on allkeys-lru: %v, want ErrEvictingPolicy", err)
	}
	if err := node.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}

	head := appendTally(t, store, 0, 3000)
	x1 := startRunner(t, newRunner(t, Config{Store: store, Redis: rdb, Projection: tally("p", 1), Logger: quietLogger()}))
	waitFor(t, rdb, "p", head)

	x2 := startRunner(t, newRunner(t, Config{Store: store, Redis: rdb, Projection: tally("p", 2), Logger: quietLogger(), RetireDelay: time.Millisecond}))
	head = appendTally(t, store, 3000, 4000)
	waitUntil(t, 30*time.Second, "the switch to v2", func() bool {
		v, err := query.Resolve(ctx, rdb, "p")
		return err == nil && v.Version == 2
	})
	select {
	case <-x1.done:
	case <-time.After(30 * time.Second):
		t.Fatal("v1 runner still running 30s after the switch")
	}
	if !errors.Is(x1.err, ErrSuperseded) {
		t.Fatalf("v1 runner: %v, want ErrSuperseded", x1.err)
	}
	waitFor(t, rdb, "p", head)
	waitUntil(t, 30*time.Second, "removal of v1", func() bool { return versionKeys(t, rdb, "p", 1) == 0 })
	if d := diffModels(referenceModel(t, store, "p", 2, head), dumpVersion(t, rdb, "p", 2)); d != "" {
		t.Fatalf("v2 differs from a from-scratch build:\n%s", d)
	}

	res, err := Rebuild(ctx, Config{Store: store, Redis: rdb, Projection: tally("p", 3), Logger: quietLogger(),
		RetireDelay: time.Millisecond, LeaseTTL: time.Second}, RebuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Previous != 2 || res.Version != 3 {
		t.Fatalf("Rebuild: %+v", res)
	}
	if err := x2.stop(); !errors.Is(err, ErrSuperseded) {
		t.Fatalf("v2 runner: %v, want ErrSuperseded", err)
	}
	startRunner(t, newRunner(t, Config{Store: store, Redis: rdb, Projection: tally("p", 3), Logger: quietLogger()}))
	waitUntil(t, 30*time.Second, "removal of v2", func() bool { return versionKeys(t, rdb, "p", 2) == 0 })
	if d := diffModels(referenceModel(t, store, "p", 3, head), dumpVersion(t, rdb, "p", 3)); d != "" {
		t.Fatalf("v3 differs from a from-scratch build:\n%s", d)
	}
}

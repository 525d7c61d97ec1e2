package projection

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/query"
)

// TestClusterFenceRefusesRolledBackCheckpoint puts a partition of a running
// projection, on a 3-master cluster, back into the state it had some
// batches earlier (every key of its hash tag, the lease included, restored
// from a DUMP taken then), as a master's replica promoted without those
// batches holds it after a network partition: the runner's client sends
// its next batch there without an error, and the lease, replicated before
// the partition and long (LeaseTTL 15s), is still valid. The runner must
// refuse that batch (its checkpoint is not the one it last wrote), start
// again from the restored checkpoint, and end with a model equal to the
// fold of the log: the lost batches applied again, once.
func TestClusterFenceRefusesRolledBackCheckpoint(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3})
	rdb := clusterClient(t, c)
	store := memory.New()
	ctx := context.Background()
	const n = 3
	reg := prometheus.NewRegistry()
	r := newRunner(t, Config{Store: store, Redis: rdb, Projection: pcounts("rb", n), ID: "one", BatchSize: 20,
		LeaseTTL: 15 * time.Second, Registerer: reg, Logger: quietLogger()})
	x := startRunner(t, r)
	v := query.ViewOf(rdb, "rb", query.Version(1), n)
	reached := func(what string, pos eventstore.Position) {
		t.Helper()
		waitUntil(t, time.Minute, what, func() bool {
			cp, err := v.Checkpoint(ctx)
			return err == nil && cp == pos
		})
	}
	reached("the first events", appendEvents(t, store, 0, 100))

	part := query.Partition{Index: 0, Count: n}
	tag := query.PartitionTag("rb", part)
	snap := dumpTag(t, rdb, tag)
	if _, ok := snap[query.PartitionCheckpointKey("rb", query.Version(1), part)]; !ok {
		t.Fatalf("no checkpoint among the keys of %s: %v", tag, snap)
	}
	reached("the second events", appendEvents(t, store, 100, 200))
	fenced := testutil.ToFloat64(r.m.fenced)
	restoreTag(t, rdb, tag, snap)

	last := appendEvents(t, store, 200, 300)
	waitFor(t, rdb, "rb", last)
	if d := diffModels(pexpected(t, store, "rb", n), pdump(t, rdb, "rb", n)); d != "" {
		t.Fatalf("model after the rollback differs from the fold of the log:\n%s", d)
	}
	if got := testutil.ToFloat64(r.m.fenced); got <= fenced {
		t.Fatalf("fenced batches %v after the rollback, want more than %v: the batch over the rolled-back checkpoint was not refused", got, fenced)
	}
	if err := x.stop(); err != nil {
		t.Fatal(err)
	}
}

// dumpTag returns DUMP of every key of hash tag tag, from its master.
func dumpTag(t testing.TB, rc redis.UniversalClient, tag string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	err := eachKey(ctx, rc, tag, func(rdb redis.Cmdable, k string) error {
		d, err := rdb.Dump(ctx, k).Result()
		out[k] = d
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// restoreTag makes the keys of hash tag tag exactly snap (dumpTag), in one
// MULTI/EXEC on its master.
func restoreTag(t testing.TB, rc redis.UniversalClient, tag string, snap map[string]string) {
	t.Helper()
	ctx := context.Background()
	rdb, err := nodeOf(ctx, rc, tag)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := rdb.Keys(ctx, tag+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	tx, ok := rdb.(interface{ TxPipeline() redis.Pipeliner })
	if !ok {
		t.Fatalf("node client %T has no TxPipeline", rdb)
	}
	pipe := tx.TxPipeline()
	for _, k := range keys {
		if _, ok := snap[k]; !ok {
			pipe.Del(ctx, k)
		}
	}
	for k, d := range snap {
		pipe.RestoreReplace(ctx, k, 0, d)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
}

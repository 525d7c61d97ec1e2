package projection

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/query"
)

// TestClusterPartitionedFailover runs two runners sharing the 8 partitions
// of a projection on a cluster (3 masters, one replica each) while events
// flow, kills the master holding partition 0's keys (and those of the other
// partitions in its slots), waits for its replica to take over and every
// partition to commit again, brings the old master back as a replica, and
// compares the final model with the fold of the log key for key: nothing
// lost, nothing applied twice across the failover.
func TestClusterPartitionedFailover(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, ReplicasPerMaster: 1})
	rdb := clusterClient(t, c)
	store := memory.New()
	ctx := context.Background()
	const n = 8
	app := startSteadyAppender(t, store)
	mk := func(id string) *Runner {
		return newRunner(t, Config{Store: store, Redis: rdb, Projection: pcounts("fo", n), ID: id, BatchSize: 50,
			LeaseTTL: 2 * time.Second, Logger: quietLogger()})
	}
	a := startRunner(t, mk("a"))
	b := startRunner(t, mk("b"))
	waitUntil(t, 30*time.Second, "two runners to share the partitions", func() bool { return spread(holders(rdb, "fo", n), "a", "b") })
	v := query.ViewOf(rdb, "fo", query.Version(1), n)
	progress := func(what string) time.Duration {
		t.Helper()
		start := time.Now()
		from, _ := v.Checkpoint(ctx)
		waitUntil(t, time.Minute, what, func() bool {
			cp, err := v.Checkpoint(ctx)
			return err == nil && from.Before(cp)
		})
		return time.Since(start)
	}
	progress("every partition's first batches")

	byMaster := map[int][]int{}
	for p := range n {
		key := query.PartitionCheckpointKey("fo", query.Version(1), query.Partition{Index: p, Count: n})
		m := c.MasterOf(key)
		byMaster[m] = append(byMaster[m], p)
	}
	if len(byMaster) < 2 {
		t.Fatalf("the %d partitions' slots are on %d master(s), want at least 2: %v", n, len(byMaster), byMaster)
	}
	key0 := query.PartitionCheckpointKey("fo", query.Version(1), query.Partition{Index: 0, Count: n})
	m := c.MasterOf(key0)
	replica := c.ReplicaOf(m)
	t.Logf("partitions per master node: %v; killing node %d (partitions %v), node %d takes over", byMaster, m, byMaster[m], replica)
	killed := time.Now()
	c.Kill(m)
	c.WaitHealthy()
	if got := c.MasterOf(key0); got != replica {
		t.Fatalf("after the kill, node %d masters %s, want %d", got, key0, replica)
	}
	progress("every partition to commit on the promoted replica")
	t.Logf("every partition committed again %v after the kill (cluster-node-timeout 3s)", time.Since(killed).Round(time.Millisecond))

	c.Restart(m)
	progress("every partition to commit with node back as a replica")
	app.halt()
	if app.err != nil {
		t.Fatal(app.err)
	}
	head, err := store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, rdb, "fo", head)
	if d := diffModels(pexpected(t, store, "fo", n), pdump(t, rdb, "fo", n)); d != "" {
		t.Fatalf("model after the failover differs from the fold of the log:\n%s", d)
	}
	t.Logf("%d events applied exactly once", app.n.Load())
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
}

func TestParseMembers(t *testing.T) {
	ms, next, err := parseMembers([]string{"1000", "a", "1900", "b", "1400", "c", "1200"}, "c")
	if err != nil || !slices.Equal(ms, []string{"a", "b", "c"}) || next != 400*time.Millisecond {
		t.Fatalf("parseMembers = %v, %v, %v; want [a b c], 400ms (b's expiry, not self's)", ms, next, err)
	}
	if _, next, err := parseMembers([]string{"1000", "me", "1900"}, "me"); err != nil || next != 0 {
		t.Fatalf("alone: next %v, %v; want 0", next, err)
	}
	for _, bad := range [][]string{{}, {"1000", "a"}, {"x"}, {"1000", "a", "y"}} {
		if _, _, err := parseMembers(bad, "me"); err == nil {
			t.Errorf("parseMembers(%q) accepted", bad)
		}
	}
}

package redistest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestClusterFailoverKeepsData starts a 3×1 cluster, writes a key, fails its
// master over by CLUSTER FAILOVER and then by a kill, and reads the key
// back through the same cluster client each time.
func TestClusterFailoverKeepsData(t *testing.T) {
	c := StartCluster(t, ClusterOptions{Masters: 3, ReplicasPerMaster: 1})
	rdb := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const key = "{el:test}:k"
	if err := rdb.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	m := c.MasterOf(key)
	r := c.ReplicaOf(m)
	c.Failover(r)
	if got := c.MasterOf(key); got != r {
		t.Fatalf("after CLUSTER FAILOVER on node %d, master of %s is node %d", r, key, got)
	}
	if c.Role(m) != "slave" {
		t.Fatalf("old master %d is %s, want slave", m, c.Role(m))
	}
	if got, err := rdb.Get(ctx, key).Result(); err != nil || got != "v" {
		t.Fatalf("after failover: GET = %q, %v", got, err)
	}
	// WAIT makes the write reach the replica before its master dies; it
	// counts the writes of its own connection, hence one connection to r.
	node := redis.NewClient(&redis.Options{Addr: c.Addrs[r], PoolSize: 1})
	defer node.Close()
	if err := node.Set(ctx, key, "w", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := node.Wait(ctx, 1, 5000).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1: %d, %v", n, err)
	}
	c.Kill(r)
	c.WaitHealthy()
	if got := c.MasterOf(key); got != m {
		t.Fatalf("after killing node %d, master of %s is node %d, want %d", r, key, got, m)
	}
	// The client learns the new layout from its failed calls, in the
	// background: it answers again within a bounded time.
	for {
		got, err := rdb.Get(ctx, key).Result()
		if err == nil {
			if got != "w" {
				t.Fatalf("after kill: GET = %q, want w", got)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("after kill: GET still fails: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval, not synchronization
	}
	c.Restart(r)
	if c.Role(r) != "slave" {
		t.Fatalf("restarted node %d is %s, want slave", r, c.Role(r))
	}
}

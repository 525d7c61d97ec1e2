package projection

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/internal/redistest"
)

// redisTarget is the Redis a test body runs on: one private redis-server,
// or a private Redis Cluster of 3 masters with one replica each. Test
// bodies written against a target run unchanged on both (onTargets).
type redisTarget struct {
	// URL names the server or the cluster as a role's configuration does
	// (redis:// or redis+cluster://); a child process opens it with
	// redisurl.Open.
	URL string
	// RDB is the test's client of the target.
	RDB redis.UniversalClient
	// Server is the single node; nil on a cluster.
	Server *redistest.Server
	// Cluster is the cluster; nil on a single node.
	Cluster *redistest.Cluster
}

// onTargets runs body as subtest "node" on one redis-server and as subtest
// "cluster" on a 3-master cluster with a replica per master.
func onTargets(t *testing.T, body func(t *testing.T, tg redisTarget)) {
	t.Run("node", func(t *testing.T) {
		srv := redistest.Start(t)
		body(t, redisTarget{URL: srv.URL, RDB: srv.Client(t), Server: srv})
	})
	t.Run("cluster", func(t *testing.T) {
		c := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, ReplicasPerMaster: 1})
		body(t, redisTarget{URL: c.URL, RDB: clusterClient(t, c), Cluster: c})
	})
}

// partitionKeyMasters returns, for each master of the cluster rdb, how many
// keys of the partitions of projection name it holds (keys under the
// partitions' hash tags {el:<name>:p<i>}).
func partitionKeyMasters(t testing.TB, rdb redis.UniversalClient, name string) map[string]int {
	t.Helper()
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("partitionKeyMasters needs a cluster client, got %T", rdb)
	}
	ctx := context.Background()
	out := map[string]int{}
	var mu sync.Mutex
	err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n := 0
		iter := m.Scan(ctx, 0, "{el:"+name+":p*", 1000).Iterator()
		for iter.Next(ctx) {
			if strings.HasPrefix(iter.Val(), "{el:"+name+":p") {
				n++
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if n > 0 {
			out[m.Options().Addr] = n
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

package projection

import (
	"context"
	"fmt"

	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

// checkEmpty is called when the runner's build has no checkpoint. It
// returns an error matching ErrCheckpointLost if the build nevertheless has
// keys besides its lease and status: a model whose checkpoint was evicted,
// deleted or lost, which applying the log from its start would count twice.
//
// It asks the keyspace itself (SCAN of the build's prefix) rather than a
// marker the batches would write, because whatever removed the checkpoint
// (an eviction, a DEL, a failover) can remove a marker too, while any model
// key left proves that records were applied. The scan costs a pass over the
// keyspace, paid only while a build has no checkpoint: at the start of a new
// build, before its first batch.
func (r *Runner) checkEmpty(ctx context.Context, active query.Build) error {
	rdb, err := nodeOf(ctx, r.cfg.Redis, r.checkpointKey)
	if err != nil {
		return fmt.Errorf("projection %s v%s: look for a model without checkpoint: %w", r.name, r.build, err)
	}
	prefix := query.PartitionPrefix(r.name, r.build, r.part)
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return fmt.Errorf("projection %s v%s: look for a model without checkpoint: %w", r.name, r.build, err)
		}
		for _, k := range keys {
			if k != r.leaseKey && k != r.statusKey {
				return r.checkpointLost(k, active)
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// checkpointLost is the error of a build found with key but no checkpoint,
// with the fix that fits it.
func (r *Runner) checkpointLost(key string, active query.Build) error {
	var fix string
	switch {
	case r.build == active:
		fix = fmt.Sprintf("rebuild it into a fresh generation beside the live one with \"replay --force %s\" "+
			"(projection.Rebuild with RebuildOptions.Force): this build keeps serving queries until the switch; "+
			"then restart the projectors that stopped with this error", r.name)
	case r.build.Version == active.Version:
		fix = fmt.Sprintf("start this generation over with \"replay --force --restart %s\" "+
			"(projection.Rebuild with RebuildOptions.Force and Restart)", r.name)
	default:
		fix = fmt.Sprintf("start this build over with \"replay --restart %s\" "+
			"(projection.Rebuild with RebuildOptions.Restart), which discards its keys first", r.name)
	}
	return fmt.Errorf("%w: %s v%s has no checkpoint but has model keys (%s): applying the log from its start "+
		"would apply every record a second time. The checkpoint was evicted or deleted; the read side's Redis "+
		"needs maxmemory-policy noeviction (see docs/operations.md). To repair, %s",
		ErrCheckpointLost, r.name, r.build, key, fix)
}

// nodeOf returns the client of the node holding key: with Redis Cluster,
// where SCAN lists one node's keys, the master of key's slot, which holds
// every key of the same hash tag; otherwise rdb itself.
func nodeOf(ctx context.Context, rdb redis.UniversalClient, key string) (redis.Cmdable, error) {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return cc.MasterForKey(ctx, key)
	}
	return rdb, nil
}

package projection

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/internal/lease"
	"github.com/eventline/eventline/query"
)

// errWatchFailed means EXEC aborted because the lease or the active version
// changed after exec checked them.
var errWatchFailed = errors.New("projection: watched key changed")

// fence is the check of a fenced transaction, run under WATCH of the lease
// and the active version: the lease is still this runner's holding (owner,
// fencing token, not expired: internal/lease's Fence), the checkpoint in
// Redis is the one this runner last read or wrote (checkpointMoved), and no
// newer build is active, read in one round trip (two for a partition, whose
// active key is in another slot and is read before the pipeline). A batch
// (execOnce) and a retried dead letter (execRetry) share it, so that both
// are refused for the same reasons.
func (r *Runner) fence(ctx context.Context, rtx *redis.Tx) error {
	if r.held == nil {
		return fmt.Errorf("%w: lease %s is not held", ErrFenced, r.leaseKey)
	}
	pipe := rtx.Pipeline()
	check := r.held.Fence().Queue(ctx, pipe)
	stored := pipe.HGet(ctx, r.checkpointKey, query.FieldPosition)
	var active *redis.StringCmd
	if r.part.Partitioned() {
		// Another slot: read apart, not watched (see watched).
		active = r.cfg.Redis.Get(ctx, r.activeKey)
	} else {
		active = pipe.Get(ctx, r.activeKey)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	if err := active.Err(); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	if err := check(); err != nil {
		if errors.Is(err, lease.ErrLost) {
			return fmt.Errorf("%w: %w", ErrFenced, err)
		}
		return err
	}
	if err := r.checkpointMoved(stored); err != nil {
		return err
	}
	if s := active.Val(); s != "" {
		if a, err := query.ParseBuild(s); err == nil && r.build.Before(a) {
			return superseded(r.name, r.build, a)
		}
	}
	return nil
}

// checkpointMoved returns an error matching ErrFenced when the checkpoint
// stored in Redis is not the one this runner's session last read or wrote.
// While the lease is this runner's, nobody else writes the checkpoint, so a
// different one means Redis lost writes under the runner without telling
// it: on Redis Cluster, a master cut off by a network partition acknowledged
// batches that its replica, promoted meanwhile, never received, and the
// client, following the new layout, sends the next batch to the replica
// without an error, with a lease that replicated before the partition and
// may still be valid there. Applying the next batch over that checkpoint
// would leave the lost batches' records out of the model for good; refused,
// the session ends and the next one starts from the checkpoint Redis has
// (docs/architecture.md, "Fencing across a failover").
func (r *Runner) checkpointMoved(stored *redis.StringCmd) error {
	at, err := checkpointFrom(stored, r.checkpointKey)
	if err != nil {
		return err
	}
	if want := r.Checkpoint(); at != want {
		return fmt.Errorf("%w: checkpoint %s is at %s in Redis, but this runner last read or wrote %s there: "+
			"Redis lost or replaced writes under the lease (a failover to a replica that missed them); "+
			"the next session starts from Redis' checkpoint", ErrFenced, r.checkpointKey, at, want)
	}
	return nil
}

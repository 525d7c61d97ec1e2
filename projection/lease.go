package projection

import (
	"context"
	"errors"
	"fmt"

	"github.com/eventline/eventline/internal/lease"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

// errWatchFailed means EXEC aborted because the lease or the active version
// changed after exec checked them.
var errWatchFailed = errors.New("projection: watched key changed")

// fence is the check of a fenced transaction, run under WATCH of the lease
// and the active version: the lease is still this runner's holding (owner,
// fencing token, not expired: internal/lease's Fence) and no newer build is
// active, read in one round trip (two for a partition, whose active key is
// in another slot and is read before the pipeline). A batch (execOnce) and a retried dead
// letter (execRetry) share it, so that both are refused for the same
// reasons.
func (r *Runner) fence(ctx context.Context, rtx *redis.Tx) error {
	if r.held == nil {
		return fmt.Errorf("%w: lease %s is not held", ErrFenced, r.leaseKey)
	}
	pipe := rtx.Pipeline()
	check := r.held.Fence().Queue(ctx, pipe)
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
	if s := active.Val(); s != "" {
		if a, err := query.ParseBuild(s); err == nil && r.build.Before(a) {
			return superseded(r.name, r.build, a)
		}
	}
	return nil
}

package projection

import (
	"context"
	"errors"
	"fmt"

	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

// errWatchFailed means EXEC aborted because the lease or the active version
// changed after exec checked them.
var errWatchFailed = errors.New("projection: watched key changed")

// fence is the check of a fenced transaction, run under WATCH of the lease
// and the active version: the lease is still this runner's and no newer
// build is active. A batch (execOnce) and a retried dead letter (execRetry)
// share it, so that both are refused for the same reasons.
func (r *Runner) fence(ctx context.Context, rtx *redis.Tx) error {
	vals, err := rtx.MGet(ctx, r.leaseKey, r.activeKey).Result()
	if err != nil {
		return err
	}
	if holder, _ := vals[0].(string); holder != r.cfg.ID {
		return fmt.Errorf("%w: lease %s is held by %q", ErrFenced, r.leaseKey, holder)
	}
	if s, _ := vals[1].(string); s != "" {
		if a, err := query.ParseBuild(s); err == nil && r.build.Before(a) {
			return superseded(r.name, r.build, a)
		}
	}
	return nil
}

// Lease scripts compare the holder token before touching the key, so that a
// runner can never extend or delete a lease another runner holds.
var (
	acquireScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0`)
	renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0`)
	releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0`)
)

// runScript runs a lease script and reports whether it returned 1.
func runScript(ctx context.Context, rdb redis.Scripter, s *redis.Script, key string, args ...any) (bool, error) {
	n, err := s.Run(ctx, rdb, []string{key}, args...).Int()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	return n == 1, err
}

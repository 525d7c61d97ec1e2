package projection

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/lease"
	"github.com/eventline/eventline/internal/retry"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

// activate makes the runner's build active per Config.Activation once it
// has reached target. done is false while a blue/green switch must wait for
// the new build to pass the old one's checkpoint; previous is the build
// replaced (zero: none).
func (r *Runner) activate(ctx context.Context, target eventstore.Position) (done bool, previous query.Build, err error) {
	if r.cfg.Activation == ActivateIfNone {
		_, _, err := activate(ctx, r.cfg.Redis, r.name, r.build, target, true)
		return err == nil, previous, err
	}
	if r.held == nil {
		return false, query.Build{}, fmt.Errorf("%w: %s v%s: cannot switch without the lease", ErrFenced, r.name, r.build)
	}
	previous, err = switchTo(ctx, r.cfg.Redis, r.name, r.build, r.held.Fence(), target)
	switch {
	case errors.Is(err, ErrBehind):
		return false, query.Build{}, nil
	case err != nil:
		return false, query.Build{}, err
	}
	switch {
	case previous == r.build:
		return true, query.Build{}, nil
	case previous.IsZero():
		r.log.Info("projection version activated", "build", r.build.String(), "position", r.Checkpoint().String())
	default:
		r.log.Info("projection version switched", "build", r.build.String(), "previous", previous.String(), "position", r.Checkpoint().String())
	}
	return true, previous, nil
}

// retire removes a build replaced by a switch, after Config.RetireDelay. On
// failure the build stays in the retired set for the next session.
func (r *Runner) retire(ctx context.Context, b query.Build) {
	if retry.Sleep(ctx, r.cfg.RetireDelay) != nil {
		return
	}
	start := time.Now()
	n, err := removeBuild(ctx, r.cfg.Redis, r.name, b, nil)
	switch {
	case err != nil && ctx.Err() == nil:
		r.log.Warn("removal of an old projection build failed; the next session resumes it", "old_build", b.String(), "error", err)
	case err == nil:
		r.log.Info("old projection build removed", "old_build", b.String(), "keys", n, "duration", time.Since(start))
	}
}

// activateScript switches the active version when the candidate's
// checkpoint has reached a position. Positions are compared as decimal
// strings (length first), because Lua numbers lose precision above 2^53.
// A switch is announced on the commit channel (ARGV[5]) like a batch, so
// that a query.Watcher waiting for a projection's first build wakes.
var activateScript = redis.NewScript(`
local function cmp(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  if a == b then return 0 end
  return a < b and -1 or 1
end
local cur = redis.call('GET', KEYS[1])
if ARGV[4] == '1' and cur then return {0, cur} end
local c = redis.call('HGET', KEYS[2], 'commit') or '0'
local p = redis.call('HGET', KEYS[2], 'prepare') or '0'
local d = cmp(c, ARGV[2])
if d == 0 then d = cmp(p, ARGV[3]) end
if d < 0 then return {-1, cur or ''} end
redis.call('SET', KEYS[1], ARGV[1])
local pos = redis.call('HGET', KEYS[2], 'position')
if pos then redis.call('PUBLISH', ARGV[5], ARGV[1] .. ' ' .. pos .. ' switched') end
return {1, cur or ''}`)

// ActivateOptions says which build Activate makes active.
type ActivateOptions struct {
	// Projection is the projection's name. Required.
	Projection string
	// Build is the build to make active, e.g. query.Version(3). Required.
	Build query.Build
	// AtLeast is the position the build's checkpoint must have reached,
	// typically the head of the log once the build has caught up.
	AtLeast eventstore.Position
}

// Validate reports options Activate would refuse, as an error matching
// ErrInvalidConfig.
func (o ActivateOptions) Validate() error {
	if err := query.ValidateName(o.Projection); err != nil {
		return fmt.Errorf("%w: ActivateOptions.Projection: %w", ErrInvalidConfig, err)
	}
	if o.Build.Version < 1 || o.Build.Generation < 0 {
		return fmt.Errorf("%w: ActivateOptions.Build %+v: version must be ≥ 1 and generation ≥ 0", ErrInvalidConfig, o.Build)
	}
	return nil
}

// Activate makes opts.Build the active build of opts.Projection, atomically,
// provided its checkpoint has reached opts.AtLeast; otherwise it returns an
// error matching ErrBehind and changes nothing. It returns the build that was
// active before (zero: none). Whoever builds a version with ActivateNever
// calls it with the head of the log once the build has caught up; queries
// resolving the active build see either the old or the new one, never a mix.
func Activate(ctx context.Context, rdb redis.Scripter, opts ActivateOptions) (previous query.Build, err error) {
	if err := opts.Validate(); err != nil {
		return previous, err
	}
	_, previous, err = activate(ctx, rdb, opts.Projection, opts.Build, opts.AtLeast, false)
	return previous, err
}

// activate runs activateScript; switched is false when onlyIfNone found an
// active build.
func activate(ctx context.Context, rdb redis.Scripter, name string, b query.Build, atLeast eventstore.Position, onlyIfNone bool) (switched bool, previous query.Build, err error) {
	if err := query.ValidateName(name); err != nil {
		return false, previous, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	flag := "0"
	if onlyIfNone {
		flag = "1"
	}
	// A partitioned build's checkpoints are in other slots than the active
	// key: check them here, then let the script switch without a position.
	// Checkpoints only move forward, so what is reached now stays reached.
	c, ok := rdb.(redis.Cmdable) // every go-redis client is
	if !ok {
		return false, previous, fmt.Errorf("%w: a %T cannot read checkpoints", ErrInvalidConfig, rdb)
	}
	if n, err := buildPartitions(ctx, c, name, b); err != nil {
		return false, previous, fmt.Errorf("projection: activate %s v%s: %w", name, b, err)
	} else if n > 1 {
		low, _, err := spanOf(ctx, c, name, b, n)
		if err != nil {
			return false, previous, fmt.Errorf("projection: activate %s v%s: %w", name, b, err)
		}
		if low.Before(atLeast) {
			return false, previous, fmt.Errorf("%w: %s v%s has a partition at %s, below %s", ErrBehind, name, b, low, atLeast)
		}
		atLeast = eventstore.Position{}
	}
	res, err := activateScript.Run(ctx, rdb,
		[]string{query.ActiveKey(name), query.CheckpointKey(name, b)},
		b.String(), strconv.FormatUint(atLeast.Commit, 10), strconv.FormatUint(atLeast.Prepare, 10), flag,
		query.CommitChannel(name)).Slice()
	if err != nil {
		return false, previous, fmt.Errorf("projection: activate %s v%s: %w", name, b, err)
	}
	if len(res) != 2 {
		return false, previous, fmt.Errorf("projection: activate %s v%s: unexpected reply %v", name, b, res)
	}
	code, _ := res[0].(int64)
	prevStr, _ := res[1].(string)
	if prevStr != "" {
		previous, _ = query.ParseBuild(prevStr)
	}
	switch code {
	case 1:
		return true, previous, nil
	case 0:
		return false, previous, nil
	default:
		return false, previous, fmt.Errorf("%w: %s v%s has not reached %s", ErrBehind, name, b, atLeast)
	}
}

// switchScript is the blue/green switch. It makes build ARGV[1] active only
// if the active build is still ARGV[2] (the caller's view; empty for none),
// and the candidate's checkpoint (KEYS[2]) has reached both the given
// position and the checkpoint of the build it replaces (KEYS[3]): a client
// that read its own write from the old version still finds it in the new
// one. The replaced build is added to the retired set (KEYS[4]) in the same
// step, so that its removal survives a crash of whoever switched. Builds are
// compared as strings only for equality; which is newer is the caller's
// business (switchTo). The caller
// must still hold the candidate's lease (KEYS[5] held by owner ARGV[5] with
// fencing token ARGV[7], internal/lease's lease_held): a runner that
// lost it must not switch to a version someone may be discarding. A
// switch is announced on the commit channel (ARGV[6]) like a batch, so that
// a query.Watcher waiting for the new build wakes.
//
// Replies {1, previous} switched (or already active), {-1, previous} behind,
// {-2, current} the active version changed under the caller, {-3, current}
// the caller does not hold the lease.
var switchScript = redis.NewScript(lease.FenceLua + `
local function behind(c, p, c2, p2)
  if #c ~= #c2 then return #c < #c2 end
  if c ~= c2 then return c < c2 end
  if #p ~= #p2 then return #p < #p2 end
  return p < p2
end
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[2] then return {-2, cur} end
if cur == ARGV[1] then return {1, cur} end
if not lease_held(KEYS[5], ARGV[5], ARGV[7]) then return {-3, cur} end
local c = redis.call('HGET', KEYS[2], 'commit') or '0'
local p = redis.call('HGET', KEYS[2], 'prepare') or '0'
if behind(c, p, ARGV[3], ARGV[4]) then return {-1, cur} end
if cur ~= '' then
  local oc = redis.call('HGET', KEYS[3], 'commit') or '0'
  local op = redis.call('HGET', KEYS[3], 'prepare') or '0'
  if behind(c, p, oc, op) then return {-1, cur} end
  redis.call('SADD', KEYS[4], cur)
end
redis.call('SET', KEYS[1], ARGV[1])
local pos = redis.call('HGET', KEYS[2], 'position')
if pos then redis.call('PUBLISH', ARGV[6], ARGV[1] .. ' ' .. pos .. ' switched') end
return {1, cur}`)

// activeBuild reads the live build of name (zero: none).
func activeBuild(ctx context.Context, rdb redis.Cmdable, name string) (query.Build, error) {
	s, err := rdb.Get(ctx, query.ActiveKey(name)).Result()
	if errors.Is(err, redis.Nil) {
		return query.Build{}, nil
	}
	if err != nil {
		return query.Build{}, fmt.Errorf("projection: read active build of %s: %w", name, err)
	}
	b, err := query.ParseBuild(s)
	if err != nil {
		return query.Build{}, fmt.Errorf("projection: %s: %w", name, err)
	}
	return b, nil
}

// superseded returns an error matching ErrSuperseded for a runner of build b
// when active is newer.
func superseded(name string, b, active query.Build) error {
	return fmt.Errorf("%w: %s v%s is active, this is v%s; stopping so as not to write over it",
		ErrSuperseded, name, active, b)
}

// switchTo makes build b the active build of name once its checkpoint has
// reached target and the checkpoint of the build it replaces, provided token
// still holds b's lease. It returns ErrBehind (wrapped) when b is not there
// yet, ErrSuperseded when a newer build is active, and ErrFenced when the
// lease was lost.
func switchTo(ctx context.Context, rdb redis.Cmdable, name string, b query.Build, fence lease.Fence, target eventstore.Position) (previous query.Build, err error) {
	cur, err := activeBuild(ctx, rdb, name)
	if err != nil {
		return previous, err
	}
	for range 10 {
		if b.Before(cur) {
			return cur, superseded(name, b, cur)
		}
		// A partitioned build being replaced has no checkpoint in the
		// active key's slot for the script to compare with: the new build
		// must reach the highest of its partitions' instead.
		if !cur.IsZero() {
			n, err := buildPartitions(ctx, rdb, name, cur)
			if err != nil {
				return previous, err
			}
			if n > 1 {
				_, high, err := spanOf(ctx, rdb, name, cur, n)
				if err != nil {
					return previous, err
				}
				if target.Before(high) {
					target = high
				}
			}
		}
		res, err := switchScript.Run(ctx, rdb,
			[]string{query.ActiveKey(name), query.CheckpointKey(name, b), query.CheckpointKey(name, cur),
				RetiredKey(name), leaseKey(name, b)},
			b.String(), cur.String(), strconv.FormatUint(target.Commit, 10), strconv.FormatUint(target.Prepare, 10), fence.Owner,
			query.CommitChannel(name), fence.TokenArg()).Slice()
		if err != nil {
			return previous, fmt.Errorf("projection: switch %s to v%s: %w", name, b, err)
		}
		if len(res) != 2 {
			return previous, fmt.Errorf("projection: switch %s to v%s: unexpected reply %v", name, b, res)
		}
		code, _ := res[0].(int64)
		s, _ := res[1].(string)
		var got query.Build
		if s != "" {
			if got, err = query.ParseBuild(s); err != nil {
				return previous, fmt.Errorf("projection: %s: active build: %w", name, err)
			}
		}
		switch code {
		case 1:
			return got, nil
		case -1:
			return got, fmt.Errorf("%w: %s v%s has not reached %s and the checkpoint of v%s", ErrBehind, name, b, target, got)
		case -3:
			return got, fmt.Errorf("%w: %s v%s: cannot switch without the lease", ErrFenced, name, b)
		}
		cur = got // the active build moved under us: look again
	}
	return previous, fmt.Errorf("projection: switch %s to v%s: active build keeps changing", name, b)
}

// spanOf returns the lowest and the highest checkpoint of the n partitions of build b.
func spanOf(ctx context.Context, rdb redis.Cmdable, name string, b query.Build, n int) (low, high eventstore.Position, err error) {
	cps, err := query.ViewOf(rdb, name, b, n).Checkpoints(ctx)
	if err != nil {
		return low, high, err
	}
	low, high = cps[0], cps[0]
	for _, cp := range cps[1:] {
		if cp.Before(low) {
			low = cp
		}
		if high.Before(cp) {
			high = cp
		}
	}
	return low, high, nil
}

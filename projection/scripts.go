package projection

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

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
	// activateScript switches the active version when the candidate's
	// checkpoint has reached a position. Positions are compared as decimal
	// strings (length first), because Lua numbers lose precision above 2^53.
	activateScript = redis.NewScript(`
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
return {1, cur or ''}`)
)

// Activate makes generation 0 of version the active build of projection
// name, atomically, provided its checkpoint has reached atLeast; otherwise it
// returns an error matching ErrBehind and changes nothing. It returns the
// version that was active before (0: none). A blue/green rebuild calls it with
// the head of the log once the new version has caught up; queries resolving
// the active build see either the old or the new one, never a mix.
func Activate(ctx context.Context, rdb redis.Scripter, name string, version int, atLeast eventstore.Position) (previous int, err error) {
	_, prev, err := activate(ctx, rdb, name, query.Build{Version: version}, atLeast, false)
	return prev.Version, err
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
	res, err := activateScript.Run(ctx, rdb,
		[]string{query.ActiveKey(name), query.CheckpointKey(name, b)},
		b.String(), strconv.FormatUint(atLeast.Commit, 10), strconv.FormatUint(atLeast.Prepare, 10), flag).Slice()
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

// runScript runs a lease script and reports whether it returned 1.
func runScript(ctx context.Context, rdb redis.Scripter, s *redis.Script, key string, args ...any) (bool, error) {
	n, err := s.Run(ctx, rdb, []string{key}, args...).Int()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	return n == 1, err
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
// must still hold the candidate's lease (KEYS[5] = ARGV[5]): a runner that
// lost it must not switch to a version someone may be discarding.
//
// Replies {1, previous} switched (or already active), {-1, previous} behind,
// {-2, current} the active version changed under the caller, {-3, current}
// the caller does not hold the lease.
var switchScript = redis.NewScript(`
local function behind(c, p, c2, p2)
  if #c ~= #c2 then return #c < #c2 end
  if c ~= c2 then return c < c2 end
  if #p ~= #p2 then return #p < #p2 end
  return p < p2
end
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[2] then return {-2, cur} end
if cur == ARGV[1] then return {1, cur} end
if redis.call('GET', KEYS[5]) ~= ARGV[5] then return {-3, cur} end
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
return {1, cur}`)

// statusScript writes a build's status hash, fenced like a batch: only the
// holder of the build's lease (KEYS[1] = ARGV[1]) writes it, so a runner
// that lost its lease, or a standby, never overwrites the holder's word. It
// also lists the build in the versions set (KEYS[3]), for the status
// command.
//
// With ARGV[3] = 'forget', a runner stopping without having applied
// anything, on a build that has no checkpoint (KEYS[4]) and is not active
// (KEYS[5]), instead removes the status and the listing: nothing was built,
// and an entry would linger as a stopped build with full lag.
//
// KEYS: lease, status, versions, checkpoint, active. ARGV: token, build,
// mode ('keep' or 'forget'), then the hash's field/value pairs.
// Replies 1 written, 2 forgotten, 0 not the holder.
var statusScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == 'forget' and redis.call('EXISTS', KEYS[4]) == 0 and redis.call('GET', KEYS[5]) ~= ARGV[2] then
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[3], ARGV[2])
  return 2
end
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('SADD', KEYS[3], ARGV[2])
return 1`)

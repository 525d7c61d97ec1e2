package projection

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/lease"
	"github.com/eventline/eventline/internal/retry"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

// The runners of a partitioned projection share its partitions like a
// consumer group. Each runner is a member: it heartbeats in the members set
// of the build it writes (query.MembersKey), a sorted set scored by when each
// membership expires on the Redis server's clock, every LeaseTTL/3, and a
// membership lasts LeaseTTL. From the live members, sorted by ID, every
// runner computes the same assignment: partition p belongs to the member at
// index p mod M, so each has at most ceil(N/M) partitions. A runner runs a
// partition runner (a Runner whose session applies one partition, fenced by
// that partition's lease) for each partition assigned to it, and stops those
// no longer assigned: a partition runner stops between batches and releases
// its lease, and the new owner, standing by on the lease, takes it within
// LeaseTTL/3. Two runners whose views of the members differ for a moment may
// both run a partition: the lease lets only one of them write, so no
// partition is ever applied by two writers. A runner that dies stops
// heartbeating; within LeaseTTL its membership and its leases expire and the
// others share its partitions: each runner looks at the members again as
// the first other membership it saw expires, and a partition runner
// standing by tries the lease again as it expires, so a dead runner's
// partitions are taken about LeaseTTL after its last heartbeat.
//
// Membership is per build, not per version: a forced rebuild (Rebuild with
// RebuildOptions.Force) builds generation g+1 of the live version with
// runners of its own, in the members set of g+1, while the projectors of that
// version go on sharing the partitions of the live generation g in the set
// of g. When the rebuild switches to g+1, the projectors' target becomes g+1
// (Runner.target): they leave the set of g, join the set of g+1, and their
// partition runners move to g+1 as an unpartitioned runner does, taking each
// partition over as the rebuild's runners let it go.

// memberScript maintains a members set (KEYS[1]): it drops expired members,
// then adds or refreshes ARGV[1] for ARGV[2] ms ('join') or removes it
// ('leave'), and returns the server's time in ms followed by the live
// members and their expiry times: {now, member, expires, member, expires...}.
var memberScript = redis.NewScript(lease.FenceLua + `
local now = lease_now()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[3] == 'leave' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
end
local out = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
table.insert(out, 1, string.format('%d', now))
return out`)

// parseMembers reads memberScript's reply: the live members, and how long
// until the first of them other than self expires (0 when none other).
func parseMembers(reply []string, self string) (members []string, next time.Duration, err error) {
	if len(reply)%2 != 1 {
		return nil, 0, fmt.Errorf("members: unexpected reply of %d items", len(reply))
	}
	now, err := strconv.ParseFloat(reply[0], 64)
	if err != nil {
		return nil, 0, fmt.Errorf("members: server time %q: %w", reply[0], err)
	}
	for i := 1; i < len(reply); i += 2 {
		members = append(members, reply[i])
		if reply[i] == self {
			continue
		}
		exp, err := strconv.ParseFloat(reply[i+1], 64)
		if err != nil {
			return nil, 0, fmt.Errorf("members: expiry of %s %q: %w", reply[i], reply[i+1], err)
		}
		if d := time.Duration(exp-now) * time.Millisecond; next == 0 || d < next {
			next = max(d, time.Millisecond)
		}
	}
	return members, next, nil
}

// groupSwitchScript is the switch of a partitioned build. The checkpoints of
// the build's partitions are in other slots, so the caller has read them
// before (groupActivate); the script, in the projection's slot, checks what
// is there: the active build is still the one the caller compared with
// (ARGV[2], empty for none), and the caller is a live member of the build
// (KEYS[3], ARGV[3]). Checkpoints only move forward, so a partition that had
// reached the target when read has still reached it now.
//
// KEYS: active, retired, members. ARGV: build, expected active, member,
// commit channel, position announced. Replies {1, previous} switched (or
// already active), {-2, current} the active build changed, {-3, current}
// the caller is no member.
var groupSwitchScript = redis.NewScript(lease.FenceLua + `
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[2] then return {-2, cur} end
if cur == ARGV[1] then return {1, cur} end
local s = redis.call('ZSCORE', KEYS[3], ARGV[3])
if not s or tonumber(s) <= lease_now() then return {-3, cur} end
if cur ~= '' then redis.call('SADD', KEYS[2], cur) end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[4], ARGV[1] .. ' ' .. ARGV[5] .. ' switched')
return {1, cur}`)

// assigned returns the partitions of n assigned to member id among members:
// those p with p mod len(members) equal to id's index in sorted order. A
// runner that is not among members is assigned none.
func assigned(members []string, id string, n int) []int {
	members = slices.Clone(members)
	slices.Sort(members)
	i, ok := slices.BinarySearch(members, id)
	if !ok {
		return nil
	}
	var ps []int
	for p := i; p < n; p += len(members) {
		ps = append(ps, p)
	}
	return ps
}

// partitionExit is a partition runner's return.
type partitionExit struct {
	p   int
	r   *Runner
	err error
}

// runGroup is Run for a partitioned projection: membership, assignment,
// one partition runner per partition taken, and the switch of the whole
// build once every partition has caught up.
func (r *Runner) runGroup(ctx context.Context) (err error) {
	n := r.parts
	// joined is the build whose members set this runner is in (zero: none
	// yet). It follows the runner's target build: a new generation of the
	// runner's version once it is active.
	var joined query.Build
	leave := func(ctx context.Context) {
		if joined.IsZero() {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = memberScript.Run(rctx, r.cfg.Redis, []string{query.MembersKey(r.name, joined)}, r.cfg.ID, r.cfg.LeaseTTL.Milliseconds(), "leave").Err()
	}
	type running struct {
		r      *Runner
		cancel context.CancelFunc
	}
	byPart := map[int]*running{}
	exited := make(chan partitionExit, n)
	gctx, gcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup // partition runners and removals
	defer func() {
		gcancel()
		wg.Wait()
		if !r.noRelease {
			leave(ctx)
		}
	}()
	// The partitions of this process read the log once between them,
	// unless the caller already gave a shared log.
	store := r.cfg.Store
	if _, ok := store.(*eventstore.SharedLog); !ok {
		store = eventstore.NewSharedLog(store, eventstore.SharedLogOptions{})
	}
	start := func(p int) {
		c := r.partitionRunner(p, store)
		cctx, cancel := context.WithCancel(gctx)
		byPart[p] = &running{r: c, cancel: cancel}
		r.mu.Lock()
		if r.applying == nil {
			r.applying = map[int]*Runner{}
		}
		r.applying[p] = c
		r.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.Run(cctx)
			exited <- partitionExit{p: p, r: c, err: err}
		}()
		r.log.Info("projection partition taken", "partition", p, "partitions", n)
	}
	var targets map[query.Build]eventstore.Position // the head each build catches up to before the switch
	removing := map[query.Build]bool{}
	retire := func(b query.Build) {
		if removing[b] {
			return
		}
		removing[b] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.retire(gctx, b)
		}()
	}
	cleaned := false
	backoff := retry.New(r.cfg.MinBackoff, r.cfg.MaxBackoff, retry.EqualJitter)
	tick := time.NewTicker(r.cfg.LeaseTTL / 3)
	defer tick.Stop()
	r.warnEviction(ctx)
	for {
		// A member that stops heartbeating is seen gone as soon as its
		// membership expires, not up to a heartbeat later.
		wait := r.cfg.LeaseTTL / 3
		b, err := r.target(gctx)
		if err == nil && b != joined {
			leave(gctx)
			if !joined.IsZero() {
				r.log.Info("projection runner shares the partitions of the active generation", "build", b.String(), "was", joined.String())
			}
			joined = b
			r.use(b)
			// Removals a crashed rebuild left once it had switched to b
			// are resumed by b's runners.
			cleaned = false
		}
		var members []string
		var next time.Duration
		if err == nil {
			var reply []string
			reply, err = memberScript.Run(gctx, r.cfg.Redis, []string{query.MembersKey(r.name, b)}, r.cfg.ID, r.cfg.LeaseTTL.Milliseconds(), "join").StringSlice()
			if err == nil {
				members, next, err = parseMembers(reply, r.cfg.ID)
			}
		}
		if err == nil {
			if next > 0 {
				wait = min(wait, next+time.Millisecond)
			}
			want := assigned(members, r.cfg.ID, n)
			for p, c := range byPart {
				if !slices.Contains(want, p) {
					// Stops after its current batch and releases the lease.
					c.cancel()
				}
			}
			for _, p := range want {
				if byPart[p] == nil {
					start(p)
				}
			}
			r.setGroupState(len(byPart))
			err = r.groupActivate(gctx, b, &targets, retire, &cleaned)
		}
		if err != nil && gctx.Err() == nil {
			// Redis failed: the partition runners ride it out on their own.
			r.setState(StateRetrying, err)
			r.m.retries.Inc()
			wait = min(wait, backoff.Next())
		} else {
			backoff.Reset()
		}
		tick.Reset(wait)
		for done := false; !done; {
			select {
			case <-ctx.Done():
				r.stopped(nil)
				return nil
			case <-tick.C:
				done = true
			case e := <-exited:
				c := byPart[e.p]
				if c != nil && c.r == e.r {
					delete(byPart, e.p)
					r.mu.Lock()
					delete(r.applying, e.p)
					r.mu.Unlock()
					if e.err == nil && ctx.Err() == nil {
						r.log.Info("projection partition released", "partition", e.p, "partitions", n)
					}
				}
				if e.err != nil && ctx.Err() == nil {
					err := fmt.Errorf("partition %d of %d: %w", e.p, n, e.err)
					r.setState(StateStopped, err)
					return err
				}
			}
		}
	}
}

// partitionRunner returns a Runner applying partition p from store,
// sharing this runner's configuration, metrics and test hooks.
func (r *Runner) partitionRunner(p int, store eventstore.Store) *Runner {
	part := query.Partition{Index: p, Count: r.parts}
	cfg := r.cfg
	cfg.Store = store
	c := &Runner{cfg: cfg, proj: r.proj, name: r.name, version: r.version, handles: r.handles, m: r.m,
		log: r.log.With("partition", p), tracer: r.tracer, pinned: r.pinned, activeKey: r.activeKey,
		part: part, partKey: r.partKey, parts: r.parts,
		beforeExec: r.beforeExec, afterCommit: r.afterCommit, noRelease: r.noRelease}
	c.st = Status{Name: r.name, Version: r.version, State: StateStarting, Runner: r.cfg.ID, LagEvents: -1, LagSeconds: -1}
	c.use(query.Build{Version: r.version})
	return c
}

// setGroupState shows whether this runner applies any partition.
func (r *Runner) setGroupState(held int) {
	s := StateStandby
	if held > 0 {
		s = StateRunning
	}
	r.mu.Lock()
	r.st.Partitions = held
	r.mu.Unlock()
	r.setState(s, nil)
}

// groupActivate switches the projection to the build the partitions write
// once every partition has reached the head of the log seen when the group
// first looked at that build, and the highest checkpoint of the build it
// replaces (a client that read its own write from the old build finds it
// in the new one), per Config.Activation. The switch itself is
// groupSwitchScript. While the build is active, it resumes the removals of
// replaced builds that a crashed runner left, once.
func (r *Runner) groupActivate(ctx context.Context, b query.Build, targets *map[query.Build]eventstore.Position,
	retire func(query.Build), cleaned *bool) error {
	rdb := r.cfg.Redis
	active, err := activeBuild(ctx, rdb, r.name)
	if err != nil {
		return err
	}
	if active == b {
		if !*cleaned {
			vs, err := rdb.SMembers(ctx, RetiredKey(r.name)).Result()
			if err != nil {
				return err
			}
			for _, v := range vs {
				if old, err := query.ParseBuild(v); err == nil && old.Before(b) {
					retire(old)
				}
			}
			*cleaned = true
		}
		return nil
	}
	switch {
	case r.cfg.Activation == ActivateNever, b.Before(active),
		!active.IsZero() && r.cfg.Activation == ActivateIfNone:
		return nil
	}
	if *targets == nil {
		*targets = map[query.Build]eventstore.Position{}
	}
	target, ok := (*targets)[b]
	if !ok {
		if target, err = r.cfg.Store.Head(ctx); err != nil {
			return fmt.Errorf("read head of the log: %w", err)
		}
		(*targets)[b] = target
	}
	n, err := buildPartitions(ctx, rdb, r.name, b)
	if err != nil || n != r.parts {
		return err // not recorded yet: no partition has started
	}
	low, _, err := spanOf(ctx, rdb, r.name, b, n)
	if err != nil || low.Before(target) {
		return err
	}
	if !active.IsZero() {
		on, err := buildPartitions(ctx, rdb, r.name, active)
		if err != nil {
			return err
		}
		_, high, err := spanOf(ctx, rdb, r.name, active, on)
		if err != nil || low.Before(high) {
			return err
		}
	}
	res, err := groupSwitchScript.Run(ctx, rdb,
		[]string{query.ActiveKey(r.name), RetiredKey(r.name), query.MembersKey(r.name, b)},
		b.String(), active.String(), r.cfg.ID, query.CommitChannel(r.name), low.String()).Slice()
	if err != nil {
		return fmt.Errorf("projection: switch %s to v%s: %w", r.name, b, err)
	}
	if len(res) != 2 {
		return fmt.Errorf("projection: switch %s to v%s: unexpected reply %v", r.name, b, res)
	}
	if code, _ := res[0].(int64); code != 1 {
		return nil // the active build moved, or our membership lapsed: look again next time
	}
	if active.IsZero() {
		r.log.Info("projection version activated", "build", b.String(), "partitions", n, "position", low.String())
	} else {
		r.log.Info("projection version switched", "build", b.String(), "previous", active.String(), "partitions", n, "position", low.String())
		retire(active)
	}
	return nil
}

// Members returns the live members sharing the partitions of build b of
// projection name (their Config.ID), sorted, as the runners see them.
func Members(ctx context.Context, rdb redis.Cmdable, name string, b query.Build) ([]string, error) {
	t, err := rdb.Time(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("projection: members of %s v%s: %w", name, b, err)
	}
	ms, err := rdb.ZRangeByScore(ctx, query.MembersKey(name, b), &redis.ZRangeBy{
		Min: "(" + strconv.FormatInt(t.UnixMilli(), 10), Max: "+inf"}).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("projection: members of %s v%s: %w", name, b, err)
	}
	slices.Sort(ms)
	return ms, nil
}

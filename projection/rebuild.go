package projection

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/lease"
	"github.com/eventline/eventline/internal/retry"
	"github.com/eventline/eventline/query"
)

// RemoveBatch is how many keys one step of a version's removal scans and
// unlinks. Small steps keep every command short, so Redis keeps serving
// queries while a large model is removed.
const RemoveBatch = 500

// RetiredKey returns the set of builds (query.Build strings) of projection
// name that a switch replaced and whose keys are still to be removed. The
// switch adds to it in the same script, and whoever finishes a removal takes
// the build out, so a removal interrupted by a crash is resumed by the next
// lease holder of the active build.
func RetiredKey(name string) string { return query.Tag(name) + ":retired" }

// dropLeaseScript deletes a lease key (KEYS[1]) if owner ARGV[1] with
// fencing token ARGV[2] still holds it.
var dropLeaseScript = redis.NewScript(lease.FenceLua + `
if not lease_held(KEYS[1], ARGV[1], ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
return 1`)

// removeBuild deletes every key of one build of name in steps of RemoveBatch
// keys (SCAN MATCH on the build prefix, then UNLINK, which frees memory off
// Redis' main thread), then forgets the build in the retired and versions
// sets, the partitions hash and its members set. The active build is never
// removed.
//
// With held nil it first waits until nobody holds the build's lease (each
// partition's, for a partitioned build): a superseded runner steps down at
// its next batch or lease renewal, a dead one loses the lease within its TTL,
// and no runner of the build takes it again once a newer build is active.
// Otherwise the caller holds the leases, held[i] partition i's (held[0] the
// build's own when it is not partitioned); their keys are kept and the
// holdings renewed at every step, then each is dropped last.
func removeBuild(ctx context.Context, rdb redis.UniversalClient, name string, b query.Build, held []*lease.Held) (removed int, err error) {
	// A partitioned build's partitions first, each once its lease is free,
	// then the keys it has in the projection's own tag.
	n, err := buildPartitions(ctx, rdb, name, b)
	if err != nil {
		return 0, fmt.Errorf("projection: remove %s v%s: %w", name, b, err)
	}
	if held != nil && len(held) != n {
		return 0, fmt.Errorf("projection: remove %s v%s: %d leases held for %d partitions", name, b, len(held), n)
	}
	holding := func(i int) *lease.Held {
		if held == nil {
			return nil
		}
		return held[i]
	}
	if n > 1 {
		for i := range n {
			k, err := removePrefix(ctx, rdb, name, b, query.Partition{Index: i, Count: n}, holding(i))
			removed += k
			if err != nil {
				return removed, err
			}
		}
	}
	var own *lease.Held
	if n == 1 {
		own = holding(0)
	}
	k, err := removePrefix(ctx, rdb, name, b, query.Partition{}, own)
	removed += k
	if err != nil {
		return removed, err
	}
	pipe := rdb.TxPipeline()
	pipe.SRem(ctx, RetiredKey(name), b.String())
	pipe.SRem(ctx, VersionsKey(name), b.String())
	if n > 1 {
		pipe.HDel(ctx, query.PartitionsKey(name), b.String())
		// A runner that died left its membership; the others left theirs
		// as they moved on.
		pipe.Del(ctx, query.MembersKey(name, b))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return removed, fmt.Errorf("projection: remove %s v%s: %w", name, b, err)
	}
	return removed, nil
}

// buildPartitions returns the partition count of build b (query.PartitionsKey),
// 1 when it has no entry.
func buildPartitions(ctx context.Context, rdb redis.Cmdable, name string, b query.Build) (int, error) {
	s, err := rdb.HGet(ctx, query.PartitionsKey(name), b.String()).Result()
	if errors.Is(err, redis.Nil) {
		return 1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read partition count of %s v%s: %w", name, b, err)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("partition count %q of %s v%s is not a positive integer", s, name, b)
	}
	return n, nil
}

// removePrefix removes the keys of partition part of build b (the zero
// Partition: the build's keys in the projection's tag), as removeBuild
// describes, and leaves the retired and versions sets alone.
func removePrefix(ctx context.Context, rdb redis.UniversalClient, name string, b query.Build, part query.Partition, held *lease.Held) (removed int, err error) {
	lk := partLeaseKey(name, b, part)
	if held == nil {
		// Polls while a runner steps down: quick at first, capped.
		pause := retry.New(5*time.Millisecond, 200*time.Millisecond, 0)
		for {
			st, err := lease.Read(ctx, rdb, lk)
			if err != nil {
				return 0, fmt.Errorf("projection: remove %s v%s: %w", name, b, err)
			}
			if st.Owner == "" {
				break
			}
			if err := retry.Sleep(ctx, pause.Next()); err != nil {
				return 0, err
			}
		}
	}
	active, err := activeBuild(ctx, rdb, name)
	if err != nil {
		return 0, err
	}
	if active == b {
		return 0, fmt.Errorf("%w: %s v%s will not be removed", ErrActive, name, b)
	}
	prefix := query.PartitionPrefix(name, b, part)
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, prefix+"*", RemoveBatch).Result()
		if err != nil {
			return removed, fmt.Errorf("projection: remove %s v%s: scan: %w", name, b, err)
		}
		if held != nil {
			keys = slices.DeleteFunc(keys, func(k string) bool { return k == lk })
			if err := held.Renew(ctx); errors.Is(err, lease.ErrLost) {
				return removed, fmt.Errorf("%w: %s v%s: lease lost during removal: %w", ErrFenced, name, b, err)
			} else if err != nil {
				return removed, fmt.Errorf("projection: remove %s v%s: renew lease: %w", name, b, err)
			}
		}
		if len(keys) > 0 {
			if err := rdb.Unlink(ctx, keys...).Err(); err != nil {
				return removed, fmt.Errorf("projection: remove %s v%s: unlink: %w", name, b, err)
			}
			removed += len(keys)
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	if held != nil {
		// Last, the lease key itself, while it is still ours: nothing of
		// the build is left, and no one else's holding is touched.
		f := held.Fence()
		if err := dropLeaseScript.Run(ctx, rdb, []string{lk}, f.Owner, f.TokenArg()).Err(); err != nil {
			return removed, fmt.Errorf("projection: remove %s v%s: lease key: %w", name, b, err)
		}
	}
	return removed, nil
}

// Discard removes every key of build b of a projection, which must not be
// active: the partial model of a cancelled rebuild, or a generation left by a
// forced rebuild that crashed and should not be resumed, with its
// checkpoint, status and dead letters. It takes the build's lease (every
// partition's lease, for a partitioned build) for the time of the removal,
// so that no runner of the build writes meanwhile; if a runner holds one
// (someone else is building it) it changes nothing and returns an error
// matching ErrBusy. The active build is never discarded (ErrActive).
func Discard(ctx context.Context, rdb redis.UniversalClient, name string, b query.Build) (removed int, err error) {
	if b.Version < 1 || b.Generation < 0 {
		return 0, fmt.Errorf("%w: build %+v", ErrInvalidConfig, b)
	}
	if err := query.ValidateName(name); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	parts, err := buildParts(ctx, rdb, name, b)
	if err != nil {
		return 0, fmt.Errorf("projection: discard %s v%s: %w", name, b, err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	owner := "discard:" + hex.EncodeToString(rnd[:])
	var held []*lease.Held
	defer func() {
		// Whatever removeBuild did not drop (it failed, or a lease was
		// busy): given back, not left to expire.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		for _, h := range held {
			_ = h.Release(rctx)
		}
	}()
	for _, part := range parts {
		l, err := lease.New(lease.Config{Redis: rdb, Key: partLeaseKey(name, b, part), Owner: owner, TTL: 10 * time.Second})
		if err != nil {
			return 0, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		h, err := l.TryAcquire(ctx)
		switch {
		case errors.Is(err, lease.ErrHeld):
			return 0, fmt.Errorf("%w: %s v%s: %w; left in place", ErrBusy, name, b, err)
		case err != nil:
			return 0, fmt.Errorf("projection: discard %s v%s: %w", name, b, err)
		}
		held = append(held, h)
	}
	// The removal renews the lease of the partition it works on; the
	// others are kept meanwhile.
	for _, h := range held {
		_, stop := h.Keep(ctx)
		defer stop()
	}
	return removeBuild(ctx, rdb, name, b, held)
}

// Phase is the stage of a rebuild.
type Phase string

// Phases of a rebuild.
const (
	// PhaseCatchingUp: the new version is being built from the start of the
	// log, beside the live version.
	PhaseCatchingUp Phase = "catching_up"
	// PhaseSwitching: the new version has reached the head seen when it
	// started and waits to pass the live version's checkpoint to switch.
	PhaseSwitching Phase = "switching"
	// PhaseRemovingOld: the new version is active; the old one's keys are
	// being removed.
	PhaseRemovingOld Phase = "removing_old"
	// PhaseDone: the new version is active and the old one is gone.
	PhaseDone Phase = "done"
)

// Progress is a snapshot of a rebuild, given to RebuildOptions.Progress.
type Progress struct {
	Name string
	// Version and Generation are the build being made; Previous and
	// PreviousGeneration the build it replaces (Previous 0: none).
	Version, Generation          int
	Previous, PreviousGeneration int
	Phase                        Phase
	// Checkpoint is the new build's position, Head the head of the log.
	Checkpoint, Head eventstore.Position
	// Holder is the runner writing the new build: this rebuild's own, or a
	// projector's that was already building it.
	Holder string
	// Parts is, for a partitioned projection, the progress of each
	// partition of the new build, in order; Checkpoint is then the lowest
	// of their checkpoints (the build has applied the log up to it) and
	// Holder their holders, joined by ','.
	Parts []PartProgress
}

// PartProgress is the progress of one partition of a rebuild.
type PartProgress struct {
	Partition int
	// Checkpoint is the partition's position; Progress.Head minus it is its lag.
	Checkpoint eventstore.Position
	// Holder holds the partition's lease ("" none).
	Holder string
}

// RebuildOptions tune Rebuild.
type RebuildOptions struct {
	// Progress, when set, is called from Rebuild's goroutine once before the
	// rebuild starts (with the checkpoint it resumes from), about every
	// ProgressEvery (default 250 ms), and once at the end.
	Progress      func(Progress)
	ProgressEvery time.Duration
	// Force rebuilds a projection whose code version is already active: a
	// new generation of that version is built from the start of the log
	// beside the live generation and switched to as a new version would be
	// (see Build in package query). Use it when the model is wrong but the
	// code's Version was not bumped: keys damaged or deleted by hand, a bug
	// fixed without a version bump. Without Force such a Rebuild does nothing
	// (RebuildResult.AlreadyActive). A forced rebuild that crashed or was cut
	// short resumes its generation from its checkpoint.
	Force bool
	// Restart discards what an earlier Rebuild of the same build left when it
	// crashed (its partial keys, checkpoint and dead letters), so this one
	// starts from the beginning of the log instead of resuming: use it when
	// the projection's code changed since. It changes nothing and fails with
	// ErrBusy while a runner holds that build's lease.
	Restart bool
}

// Validate reports options Rebuild would refuse, as an error matching
// ErrInvalidConfig.
func (o RebuildOptions) Validate() error {
	if o.ProgressEvery < 0 {
		return fmt.Errorf("%w: RebuildOptions.ProgressEvery %v is negative", ErrInvalidConfig, o.ProgressEvery)
	}
	return nil
}

// RebuildResult says what a Rebuild did.
type RebuildResult struct {
	Name string
	// Version and Generation are the build made (or found active).
	Version, Generation int
	// Previous and PreviousGeneration are the build replaced (Previous 0:
	// none).
	Previous, PreviousGeneration int
	// AlreadyActive: the version was active before Rebuild began and Force
	// was not set; nothing was done.
	AlreadyActive bool
	// Checkpoint is the new build's position when Rebuild returned.
	Checkpoint eventstore.Position
}

func (r *RebuildResult) build() query.Build {
	return query.Build{Version: r.Version, Generation: r.Generation}
}

func (r *RebuildResult) previous() query.Build {
	return query.Build{Version: r.Previous, Generation: r.PreviousGeneration}
}

// Rebuild builds cfg.Projection at its version beside the live build and
// switches to it with no gap (blue/green): it runs a Runner of the new build
// with Activation ActivateIfNewer, which catches up from the start of the log
// while the live build keeps serving and being updated, switches the active
// build atomically once the new one has passed both the head it started from
// and the live build's checkpoint, then removes the old build's keys in
// steps of RemoveBatch. Rebuild returns when the old build is gone, and its
// runner stops: long-running projectors with the new code keep the build up
// to date from there, and runners of an older version stop with
// ErrSuperseded, while runners of the same version (after a forced rebuild)
// move to the new generation by themselves.
//
// A partitioned projection is rebuilt the same way, all its partitions in
// this process: Rebuild's runner is a member of the new build's own members
// set (query.MembersKey), where it is alone unless a projector builds the
// same build, so it runs a partition runner, fenced by that partition's
// lease, for every partition; the whole projection switches at once when
// every partition has caught up, as a new version's runners switch it
// (group.go). Progress.Parts shows each partition.
//
// If a projector is already building the same build, Rebuild's runner stands
// by (or, partitioned, shares the partitions with it) and Rebuild follows its
// progress.
//
// A Rebuild that crashes resumes from the new build's checkpoint when run
// again (or starts over with opts.Restart). A Rebuild whose ctx ends before
// the switch leaves the live build untouched, removes the new build's partial
// keys (with Discard, unless a projector is building it) and returns
// ctx's error. A version older than the
// active one gives ErrSuperseded; the active version itself gives
// AlreadyActive at once, unless opts.Force asks for a new generation of it.
func Rebuild(ctx context.Context, cfg Config, opts RebuildOptions) (RebuildResult, error) {
	if err := cfg.Validate(); err != nil {
		return RebuildResult{}, err
	}
	if err := opts.Validate(); err != nil {
		return RebuildResult{}, err
	}
	cfg.Activation = ActivateIfNewer
	cfg = cfg.withDefaults()
	name, version := cfg.Projection.Name(), cfg.Projection.Version()
	rdb := cfg.Redis
	res := RebuildResult{Name: name, Version: version}
	prev, err := activeBuild(ctx, rdb, name)
	if err != nil {
		return res, err
	}
	res.Previous, res.PreviousGeneration = prev.Version, prev.Generation
	switch {
	case prev.Version > version:
		return res, fmt.Errorf("projection: rebuild: %w", superseded(name, query.Build{Version: version}, prev))
	case prev.Version == version && !opts.Force:
		res.AlreadyActive, res.Generation = true, prev.Generation
		res.Checkpoint, err = query.ReadCheckpoint(ctx, rdb, name, prev)
		return res, err
	case prev.Version == version:
		if res.Generation, err = nextGeneration(ctx, rdb, name, prev); err != nil {
			return res, err
		}
	}
	target := res.build()
	if opts.Restart && target != prev {
		n, err := Discard(ctx, rdb, name, target)
		if err != nil {
			return res, fmt.Errorf("projection: rebuild %s v%s from the start: %w", name, target, err)
		}
		if n > 0 {
			cfg.Logger.Info("rebuild starts over; partial build removed", "projection", name, "build", target.String(), "keys", n)
		}
	}
	r, err := NewRunner(cfg)
	if err != nil {
		return res, err
	}
	r.pinned = &target
	every := opts.ProgressEvery
	if every <= 0 {
		every = 250 * time.Millisecond
	}
	report := func(p Progress) {
		if opts.Progress != nil {
			opts.Progress(p)
		}
	}
	if p, err := observe(ctx, cfg, target, prev); err == nil {
		res.Checkpoint = p.Checkpoint
		report(p)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	stopRunner := func() error {
		stop()
		if done == nil {
			return nil
		}
		err := <-done
		done = nil
		return err
	}
	defer func() { _ = stopRunner() }()

	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = stopRunner()
			return res, cancelRebuild(ctx, cfg, res)
		case err := <-done:
			done = nil
			if ctx.Err() != nil {
				return res, cancelRebuild(ctx, cfg, res)
			}
			if err == nil {
				err = errors.New("runner stopped")
			}
			return res, fmt.Errorf("projection: rebuild of %s v%s stopped; v%s is still active and the new build is left for inspection: %w",
				name, target, prev, err)
		case <-tick.C:
		}
		p, err := observe(ctx, cfg, target, prev)
		if err != nil {
			// Redis or the store is down: the runner retries; keep reporting
			// the last known state rather than failing the rebuild.
			cfg.Logger.Debug("rebuild: cannot observe progress", "projection", name, "error", err)
			continue
		}
		res.Checkpoint = p.Checkpoint
		report(p)
		if p.Phase == PhaseDone {
			return res, stopRunner()
		}
	}
}

// nextGeneration picks the generation a forced rebuild of the active build
// makes: a newer generation of the same version left by a forced rebuild
// that crashed or was cut short (resumed from its checkpoint, as any
// rebuild), or else the active generation plus one.
func nextGeneration(ctx context.Context, rdb redis.Cmdable, name string, active query.Build) (int, error) {
	ss, err := rdb.SMembers(ctx, VersionsKey(name)).Result()
	if err != nil {
		return 0, fmt.Errorf("projection: rebuild %s: read builds: %w", name, err)
	}
	next := active.Generation + 1
	for _, s := range ss {
		if b, err := query.ParseBuild(s); err == nil && b.Version == active.Version && b.Generation > next {
			next = b.Generation
		}
	}
	return next, nil
}

// observe reads the progress of a rebuild from Redis and the store.
func observe(ctx context.Context, cfg Config, b, prev query.Build) (Progress, error) {
	name := cfg.Projection.Name()
	p := Progress{Name: name, Version: b.Version, Generation: b.Generation,
		Previous: prev.Version, PreviousGeneration: prev.Generation, Phase: PhaseCatchingUp}
	pipe := cfg.Redis.Pipeline()
	active := pipe.Get(ctx, query.ActiveKey(name))
	retired := pipe.SIsMember(ctx, RetiredKey(name), prev.String())
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return p, err
	}
	// The partition count of the code: a build is recorded in the
	// partitions hash only once its first partition starts.
	n, _ := partitionsOf(cfg.Projection)
	cps, err := query.ViewOf(cfg.Redis, name, b, n).Checkpoints(ctx)
	if err != nil {
		return p, err
	}
	var hs []string
	for i, cp := range cps {
		part := query.Partition{}
		if n > 1 {
			part = query.Partition{Index: i, Count: n}
		}
		holder, err := lease.Read(ctx, cfg.Redis, partLeaseKey(name, b, part))
		if err != nil {
			return p, err
		}
		if i == 0 || cp.Before(p.Checkpoint) {
			p.Checkpoint = cp
		}
		if holder.Owner != "" && !slices.Contains(hs, holder.Owner) {
			hs = append(hs, holder.Owner)
		}
		if n > 1 {
			p.Parts = append(p.Parts, PartProgress{Partition: i, Checkpoint: cp, Holder: holder.Owner})
		}
	}
	p.Holder = strings.Join(hs, ",")
	head, err := cfg.Store.Head(ctx)
	if err != nil {
		return p, err
	}
	p.Head = head
	for _, pp := range p.Parts {
		if p.Head.Before(pp.Checkpoint) {
			p.Head = pp.Checkpoint
		}
	}
	if p.Head.Before(p.Checkpoint) {
		p.Head = p.Checkpoint
	}
	a := active.Val()
	switch {
	case a == b.String() && !prev.IsZero() && retired.Val():
		p.Phase = PhaseRemovingOld
	case a == b.String():
		p.Phase = PhaseDone
	case !p.Checkpoint.Before(p.Head):
		p.Phase = PhaseSwitching
	}
	return p, nil
}

// cancelRebuild ends a Rebuild whose ctx ended: the runner has stopped. Before
// the switch the partial build is discarded; after it, only the removal of
// the old build was interrupted, and the next lease holder of the new build
// resumes it.
func cancelRebuild(ctx context.Context, cfg Config, res RebuildResult) error {
	name, b, prev := res.Name, res.build(), res.previous()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	active, err := activeBuild(cctx, cfg.Redis, name)
	if err != nil {
		return fmt.Errorf("projection: rebuild of %s v%s cancelled (%w); its partial keys could not be checked: %w", name, b, ctx.Err(), err)
	}
	if active == b {
		return fmt.Errorf("projection: rebuild of %s v%s cancelled after the switch (v%s is active); removal of v%s resumes with the next runner: %w",
			name, b, b, prev, ctx.Err())
	}
	n, err := Discard(cctx, cfg.Redis, name, b)
	switch {
	case errors.Is(err, ErrBusy):
		return fmt.Errorf("projection: rebuild of %s v%s cancelled; v%s untouched; %w: %w", name, b, active, err, ctx.Err())
	case err != nil:
		return fmt.Errorf("projection: rebuild of %s v%s cancelled; v%s untouched; removing the partial keys failed: %w (%w)", name, b, active, err, ctx.Err())
	}
	cfg.Logger.Info("rebuild cancelled; partial build removed", "projection", name, "build", b.String(), "keys", n, "active", active.String())
	return fmt.Errorf("projection: rebuild of %s v%s cancelled; v%s untouched, %d partial keys of v%s removed: %w",
		name, b, active, n, b, ctx.Err())
}

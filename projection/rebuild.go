package projection

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

// RemoveBatch is how many keys one step of a version's removal scans and
// unlinks. Small steps keep every command short, so Redis keeps serving
// queries while a large model is removed.
const RemoveBatch = 500

// RetiredKey returns the set of versions of projection name that a switch
// replaced and whose keys are still to be removed. The switch adds to it in
// the same script, and whoever finishes a removal takes the version out, so a
// removal interrupted by a crash is resumed by the next lease holder of the
// active version.
func RetiredKey(name string) string { return query.Tag(name) + ":retired" }

// activeVersion reads the live version of name (0: none).
func activeVersion(ctx context.Context, rdb redis.Cmdable, name string) (int, error) {
	v, err := rdb.Get(ctx, query.ActiveKey(name)).Int()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("projection: read active version of %s: %w", name, err)
	}
	return v, nil
}

// superseded returns an error matching ErrSuperseded for a runner of version
// when active is newer.
func superseded(name string, version, active int) error {
	return fmt.Errorf("%w: %s v%d is active, this is v%d; stopping so as not to write over it",
		ErrSuperseded, name, active, version)
}

// switchTo makes version the active version of name once its checkpoint has
// reached target and the checkpoint of the version it replaces, provided
// token still holds version's lease. It returns ErrBehind (wrapped) when the
// version is not there yet, ErrSuperseded when a newer version is active, and
// ErrFenced when the lease was lost.
func switchTo(ctx context.Context, rdb redis.Cmdable, name string, version int, token string, target eventstore.Position) (previous int, err error) {
	cur, err := activeVersion(ctx, rdb, name)
	if err != nil {
		return 0, err
	}
	for range 10 {
		if cur > version {
			return cur, superseded(name, version, cur)
		}
		curArg := ""
		if cur != 0 {
			curArg = strconv.Itoa(cur)
		}
		res, err := switchScript.Run(ctx, rdb,
			[]string{query.ActiveKey(name), query.CheckpointKey(name, version), query.CheckpointKey(name, cur),
				RetiredKey(name), leaseKey(name, version)},
			version, curArg, strconv.FormatUint(target.Commit, 10), strconv.FormatUint(target.Prepare, 10), token).Slice()
		if err != nil {
			return 0, fmt.Errorf("projection: switch %s to v%d: %w", name, version, err)
		}
		if len(res) != 2 {
			return 0, fmt.Errorf("projection: switch %s to v%d: unexpected reply %v", name, version, res)
		}
		code, _ := res[0].(int64)
		s, _ := res[1].(string)
		got := 0
		if s != "" {
			if got, err = strconv.Atoi(s); err != nil {
				return 0, fmt.Errorf("projection: %s: active version %q is not a number", name, s)
			}
		}
		switch code {
		case 1:
			return got, nil
		case -1:
			return got, fmt.Errorf("%w: %s v%d has not reached %s and the checkpoint of v%d", ErrBehind, name, version, target, got)
		case -3:
			return got, fmt.Errorf("%w: %s v%d: cannot switch without the lease", ErrFenced, name, version)
		}
		cur = got // the active version moved under us: look again
	}
	return 0, fmt.Errorf("projection: switch %s to v%d: active version keeps changing", name, version)
}

// removeVersion deletes every key of one version of name in steps of
// RemoveBatch keys (SCAN MATCH on the version prefix, then UNLINK, which
// frees memory off Redis' main thread), then forgets the version in the
// retired and versions sets. The active version is never removed.
//
// With token empty it first waits until nobody holds the version's lease: a
// superseded runner steps down at its next batch or lease renewal, a dead one
// loses the lease within its TTL, and no runner of the version takes it again
// once a newer version is active. With a token, the caller holds the lease
// under that token; its lease key is kept and renewed at every step.
func removeVersion(ctx context.Context, rdb redis.UniversalClient, name string, version int, token string, ttl time.Duration) (removed int, err error) {
	lk := leaseKey(name, version)
	if token == "" {
		pause := 5 * time.Millisecond
		for {
			n, err := rdb.Exists(ctx, lk).Result()
			if err != nil {
				return 0, fmt.Errorf("projection: remove %s v%d: %w", name, version, err)
			}
			if n == 0 {
				break
			}
			if err := sleep(ctx, pause); err != nil {
				return 0, err
			}
			pause = min(2*pause, 200*time.Millisecond)
		}
	}
	active, err := activeVersion(ctx, rdb, name)
	if err != nil {
		return 0, err
	}
	if active == version {
		return 0, fmt.Errorf("%w: %s v%d will not be removed", ErrActive, name, version)
	}
	prefix := query.VersionPrefix(name, version)
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, prefix+"*", RemoveBatch).Result()
		if err != nil {
			return removed, fmt.Errorf("projection: remove %s v%d: scan: %w", name, version, err)
		}
		if token != "" {
			keys = slices.DeleteFunc(keys, func(k string) bool { return k == lk })
			ok, err := runScript(ctx, rdb, renewScript, lk, token, ttl.Milliseconds())
			if err != nil {
				return removed, fmt.Errorf("projection: remove %s v%d: renew lease: %w", name, version, err)
			}
			if !ok {
				return removed, fmt.Errorf("%w: %s v%d: lease lost during removal", ErrFenced, name, version)
			}
		}
		if len(keys) > 0 {
			if err := rdb.Unlink(ctx, keys...).Err(); err != nil {
				return removed, fmt.Errorf("projection: remove %s v%d: unlink: %w", name, version, err)
			}
			removed += len(keys)
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	pipe := rdb.TxPipeline()
	pipe.SRem(ctx, RetiredKey(name), version)
	pipe.SRem(ctx, VersionsKey(name), version)
	if _, err := pipe.Exec(ctx); err != nil {
		return removed, fmt.Errorf("projection: remove %s v%d: %w", name, version, err)
	}
	return removed, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Discard removes every key of a version that is not active: the partial
// model of a cancelled rebuild, its checkpoint, status and dead letters. It
// takes the version's lease for the time of the removal, so that no runner of
// the version writes meanwhile; if a runner holds it (someone else is
// building this version) it changes nothing and returns an error matching
// ErrBusy. The active version is never discarded (ErrActive).
func Discard(ctx context.Context, rdb redis.UniversalClient, name string, version int) (removed int, err error) {
	if err := query.ValidateName(name); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	token := "discard:" + hex.EncodeToString(b[:])
	ttl := 10 * time.Second
	lk := leaseKey(name, version)
	ok, err := runScript(ctx, rdb, acquireScript, lk, token, ttl.Milliseconds())
	if err != nil {
		return 0, fmt.Errorf("projection: discard %s v%d: %w", name, version, err)
	}
	if !ok {
		holder, _ := rdb.Get(ctx, lk).Result()
		return 0, fmt.Errorf("%w: %s v%d is held by %q; left in place", ErrBusy, name, version, holder)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_, _ = runScript(rctx, rdb, releaseScript, lk, token)
	}()
	return removeVersion(ctx, rdb, name, version, token, ttl)
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
	// Version is the version being built; Previous the one it replaces (0:
	// none).
	Version, Previous int
	Phase             Phase
	// Checkpoint is the new version's position, Head the head of the log.
	Checkpoint, Head eventstore.Position
	// Holder is the runner writing the new version: this rebuild's own, or a
	// projector's that was already building it.
	Holder string
}

// RebuildOptions tune Rebuild.
type RebuildOptions struct {
	// Progress, when set, is called from Rebuild's goroutine about every
	// ProgressEvery (default 250 ms) and once at the end.
	Progress      func(Progress)
	ProgressEvery time.Duration
}

// RebuildResult says what a Rebuild did.
type RebuildResult struct {
	Name    string
	Version int
	// Previous is the version replaced (0: none).
	Previous int
	// AlreadyActive: the version was active before Rebuild began; nothing was
	// done.
	AlreadyActive bool
	// Checkpoint is the new version's position when Rebuild returned.
	Checkpoint eventstore.Position
}

// Rebuild builds cfg.Projection at its version beside the live version and
// switches to it with no gap (blue/green): it runs a Runner of the new version
// with Activation ActivateIfNewer, which catches up from the start of the log
// while the live version keeps serving and being updated, switches the active
// version atomically once the new one has passed both the head it started
// from and the live version's checkpoint, then removes the old version's keys
// in steps of RemoveBatch. Rebuild returns when the old version is gone, and
// its runner stops: long-running projectors with the new code keep the
// version up to date from there, and runners of the old version stop with
// ErrSuperseded.
//
// If a projector is already building the same version, Rebuild's runner
// stands by and Rebuild just follows its progress.
//
// A Rebuild that crashes resumes from the new version's checkpoint when run
// again. A Rebuild whose ctx ends before the switch leaves the live version
// untouched, removes the new version's partial keys (with Discard, unless a
// projector is building it) and returns ctx's error. A version older than the
// active one gives ErrSuperseded; the active version itself gives
// AlreadyActive at once.
func Rebuild(ctx context.Context, cfg Config, opts RebuildOptions) (RebuildResult, error) {
	if err := cfg.Validate(); err != nil {
		return RebuildResult{}, err
	}
	cfg.Activation = ActivateIfNewer
	cfg = cfg.withDefaults()
	name, version := cfg.Projection.Name(), cfg.Projection.Version()
	rdb := cfg.Redis
	res := RebuildResult{Name: name, Version: version}
	prev, err := activeVersion(ctx, rdb, name)
	if err != nil {
		return res, err
	}
	res.Previous = prev
	switch {
	case prev > version:
		return res, fmt.Errorf("projection: rebuild: %w", superseded(name, version, prev))
	case prev == version:
		res.AlreadyActive = true
		res.Checkpoint, err = query.ReadCheckpoint(ctx, rdb, name, version)
		return res, err
	}
	r, err := New(cfg)
	if err != nil {
		return res, err
	}
	every := opts.ProgressEvery
	if every <= 0 {
		every = 250 * time.Millisecond
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
	report := func(p Progress) {
		if opts.Progress != nil {
			opts.Progress(p)
		}
	}
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
			return res, fmt.Errorf("projection: rebuild of %s v%d stopped; v%d is still active and the new version is left for inspection: %w",
				name, version, prev, err)
		case <-tick.C:
		}
		p, err := observe(ctx, cfg, version, prev)
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

// observe reads the progress of a rebuild from Redis and the store.
func observe(ctx context.Context, cfg Config, version, prev int) (Progress, error) {
	name := cfg.Projection.Name()
	p := Progress{Name: name, Version: version, Previous: prev, Phase: PhaseCatchingUp}
	pipe := cfg.Redis.Pipeline()
	active := pipe.Get(ctx, query.ActiveKey(name))
	cp := pipe.HGet(ctx, query.CheckpointKey(name, version), query.FieldPosition)
	retired := pipe.SIsMember(ctx, RetiredKey(name), prev)
	holder := pipe.Get(ctx, leaseKey(name, version))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return p, err
	}
	head, err := cfg.Store.Head(ctx)
	if err != nil {
		return p, err
	}
	p.Head, p.Holder = head, holder.Val()
	p.Checkpoint, _ = eventstore.ParsePosition(cp.Val())
	if p.Head.Before(p.Checkpoint) {
		p.Head = p.Checkpoint
	}
	a, _ := strconv.Atoi(active.Val())
	switch {
	case a == version && prev != 0 && retired.Val():
		p.Phase = PhaseRemovingOld
	case a == version:
		p.Phase = PhaseDone
	case !p.Checkpoint.Before(p.Head):
		p.Phase = PhaseSwitching
	}
	return p, nil
}

// cancelRebuild ends a Rebuild whose ctx ended: the runner has stopped. Before
// the switch the partial version is discarded; after it, only the removal of
// the old version was interrupted, and the next lease holder of the new
// version resumes it.
func cancelRebuild(ctx context.Context, cfg Config, res RebuildResult) error {
	name, version := res.Name, res.Version
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	active, err := activeVersion(cctx, cfg.Redis, name)
	if err != nil {
		return fmt.Errorf("projection: rebuild of %s v%d cancelled (%w); its partial keys could not be checked: %w", name, version, ctx.Err(), err)
	}
	if active == version {
		return fmt.Errorf("projection: rebuild of %s v%d cancelled after the switch (v%d is active); removal of v%d resumes with the next runner: %w",
			name, version, version, res.Previous, ctx.Err())
	}
	n, err := Discard(cctx, cfg.Redis, name, version)
	switch {
	case errors.Is(err, ErrBusy):
		return fmt.Errorf("projection: rebuild of %s v%d cancelled; v%d untouched; %w: %w", name, version, active, err, ctx.Err())
	case err != nil:
		return fmt.Errorf("projection: rebuild of %s v%d cancelled; v%d untouched; removing the partial keys failed: %w (%w)", name, version, active, err, ctx.Err())
	}
	cfg.Logger.Info("rebuild cancelled; partial version removed", "projection", name, "version", version, "keys", n, "active", active)
	return fmt.Errorf("projection: rebuild of %s v%d cancelled; v%d untouched, %d partial keys of v%d removed: %w",
		name, version, active, n, version, ctx.Err())
}

package projection

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/batch"
	"github.com/eventline/eventline/internal/lease"
	"github.com/eventline/eventline/query"
)

// session is one tenure of the lease: read the checkpoint, subscribe after it,
// apply batches until the lease is lost, ctx ends or something fails. Whatever
// ends it, the next session starts again from the checkpoint in Redis, which
// is the only truth about what was applied.
func (r *Runner) session(ctx context.Context) error {
	rdb := r.cfg.Redis
	// Nothing is written before this check: a runner of a superseded build
	// must leave its keys to the removal under way.
	active, err := activeBuild(ctx, rdb, r.name)
	if err != nil {
		return err
	}
	switch {
	case r.build.Before(active):
		return superseded(r.name, r.build, active)
	case !active.IsZero() && active.Version < r.version && r.cfg.Activation == ActivateIfNone:
		return fmt.Errorf("%w: %s v%d is active and this runner has v%d; Config.Activation is ActivateIfNone, "+
			"so rebuild it explicitly (the replay command or projection.Rebuild) or use ActivateIfNewer",
			ErrNewVersion, r.name, active, r.version)
	}
	if err := recordPartitions(ctx, rdb, r.name, r.build, r.part.Count); err != nil {
		return err
	}
	cp, err := readCheckpointKey(ctx, rdb, r.checkpointKey)
	if err != nil {
		return err
	}
	if cp.IsZero() {
		// Starting from the beginning is right only for a build that has
		// nothing yet: over a model whose checkpoint was lost it would apply
		// every record a second time.
		if err := r.checkEmpty(ctx, active); err != nil {
			return err
		}
	}
	head, err := r.cfg.Store.Head(ctx)
	if err != nil {
		return fmt.Errorf("read head of the log: %w", err)
	}
	r.mu.Lock()
	r.st.Checkpoint, r.st.Head, r.st.HeadAt = cp, head, time.Now()
	r.mu.Unlock()
	// target is the head seen when the lease was taken: reaching it ends the
	// catch-up and, unless ActivateNever, makes the version active.
	target := head
	// A partition never switches by itself: the group switches the whole
	// build once every partition has caught up (group.go).
	activating := r.cfg.Activation != ActivateNever && active != r.build && !r.part.Partitioned()
	state := StateCatchingUp
	if !cp.Before(target) {
		state = StateRunning
	}
	r.setState(state, nil)
	if err := r.writeStatus(ctx); err != nil {
		return err
	}

	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// removing holds the builds whose removal this session runs.
	removing := map[query.Build]bool{}
	retire := func(builds ...query.Build) {
		for _, v := range builds {
			if v == r.build || removing[v] {
				continue
			}
			removing[v] = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.retire(sctx, v)
			}()
		}
	}
	tryActivate := func() error {
		if !activating || r.Checkpoint().Before(target) {
			return nil
		}
		done, previous, err := r.activate(ctx, target)
		if err != nil || !done {
			return err
		}
		activating = false
		if !previous.IsZero() {
			retire(previous)
		}
		return nil
	}
	if err := tryActivate(); err != nil {
		return err
	}
	if active == r.build && !r.part.Partitioned() {
		// The lease holder of the active build finishes removals that a
		// crashed predecessor left.
		vs, err := rdb.SMembers(ctx, RetiredKey(r.name)).Result()
		if err != nil {
			return err
		}
		for _, v := range vs {
			if b, err := query.ParseBuild(v); err == nil && b.Before(r.build) {
				retire(b)
			}
		}
	}

	// The subscription is read ahead into a bounded buffer; a batch closes
	// when full or FlushInterval after its first record.
	subscribe := func(ctx context.Context) iter.Seq2[eventstore.Record, error] {
		return r.cfg.Store.Subscribe(ctx, cp)
	}
	if p, ok := predecoderOf(r.proj); ok {
		subscribe = predecoding(subscribe, p, r.mine)
	}
	batches, err := batch.Start(sctx, subscribe,
		batch.Config{Size: r.cfg.BatchSize, MaxWait: r.cfg.FlushInterval, Buffer: 2 * r.cfg.BatchSize})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	defer batches.Stop()

	renewEvery := r.cfg.LeaseTTL / 3
	lastRenew := time.Now()
	lastStatus := time.Now()
	tick := time.NewTicker(min(renewEvery, r.cfg.StatusEvery))
	defer tick.Stop()
	for {
		// Renewing touches the lease key, which would abort a batch's WATCH; it
		// happens here, between batches, on the goroutine that runs them.
		if time.Since(lastRenew) >= renewEvery {
			if err := r.held.Renew(ctx); errors.Is(err, lease.ErrLost) {
				return fmt.Errorf("%w: %w", ErrFenced, err)
			} else if err != nil {
				return fmt.Errorf("renew lease: %w", err)
			}
			// An idle runner of a build that was just replaced learns it
			// here, not only at its next batch, and lets the removal begin.
			if a, err := activeBuild(ctx, rdb, r.name); err != nil {
				return err
			} else if r.build.Before(a) {
				return superseded(r.name, r.build, a)
			}
			lastRenew = time.Now()
		}
		if time.Since(lastStatus) >= r.cfg.StatusEvery {
			if err := r.refreshStatus(ctx); err != nil {
				return err
			}
			// Dead letters an operator asked to retry (RetryDeadLetter).
			if err := r.retryDeadLetters(ctx); err != nil {
				return err
			}
			lastStatus = time.Now()
		}

		batch, subErr := batches.Next(ctx, tick.C)
		switch {
		case ctx.Err() != nil && len(batch) == 0:
			return nil
		case subErr == nil && len(batch) == 0: // the tick: between batches
			if err := tryActivate(); err != nil {
				return err
			}
			continue
		}
		if len(batch) > 0 {
			if err := r.commit(ctx, batch); err != nil {
				return err
			}
			last := batch[len(batch)-1].Position
			if state == StateCatchingUp && !last.Before(target) {
				state = StateRunning
				r.setState(state, nil)
				if err := r.writeStatus(ctx); err != nil {
					return err
				}
			}
			if err := tryActivate(); err != nil {
				return err
			}
		}
		if subErr != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("subscription: %w", subErr)
		}
	}
}

// recordPartitions writes the partition count of build b in the
// projection's PartitionsKey before its first batch, so that it is there
// before the build can become active and readers route keys with it. A
// build recorded with another count is refused: the partition count is fixed
// per version, and changing it means a new version.
//
// A build's partition count decides where its keys live and where readers
// look, so it must never change under a build: a runner with n > 1 refuses a
// build already begun unpartitioned (its checkpoint is in the projection's
// own tag), and a runner with n = 1 (which records nothing, keeping the
// unpartitioned layout) refuses a build recorded with more partitions.
func recordPartitions(ctx context.Context, rdb redis.Cmdable, name string, b query.Build, n int) error {
	n = max(n, 1)
	if n > 1 {
		key := query.PartitionsKey(name)
		recorded, err := rdb.HExists(ctx, key, b.String()).Result()
		if err != nil {
			return fmt.Errorf("read partition count of %s v%s: %w", name, b, err)
		}
		if !recorded {
			begun, err := rdb.Exists(ctx, query.CheckpointKey(name, b)).Result()
			if err != nil {
				return fmt.Errorf("read checkpoint of %s v%s: %w", name, b, err)
			}
			if begun > 0 {
				return fmt.Errorf("%w: %s v%s was built with 1 partition and this runner has %d: a new partition count needs a new version",
					ErrInvalidConfig, name, b, n)
			}
		}
		if err := rdb.HSetNX(ctx, key, b.String(), n).Err(); err != nil {
			return fmt.Errorf("record partition count of %s v%s: %w", name, b, err)
		}
	}
	got, err := buildPartitions(ctx, rdb, name, b)
	if err != nil {
		return err
	}
	if got != n {
		return fmt.Errorf("%w: %s v%s was built with %d partitions and this runner has %d: a new partition count needs a new version",
			ErrInvalidConfig, name, b, got, n)
	}
	return nil
}

// readCheckpointKey reads the position of the checkpoint hash at key, Start when none.
func readCheckpointKey(ctx context.Context, rdb redis.Cmdable, key string) (eventstore.Position, error) {
	return checkpointFrom(rdb.HGet(ctx, key, query.FieldPosition), key)
}

// checkpointFrom reads the answer to an HGET of the position field of
// checkpoint key: no field is Start.
func checkpointFrom(cmd *redis.StringCmd, key string) (eventstore.Position, error) {
	s, err := cmd.Result()
	if errors.Is(err, redis.Nil) {
		return eventstore.Start, nil
	}
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("read checkpoint %s: %w", key, err)
	}
	return eventstore.ParsePosition(s)
}

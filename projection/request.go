package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/eventline/eventline/internal/lease"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

// ErrRebuildRequested means RequestRebuild found a rebuild of the projection
// already requested and not finished.
var ErrRebuildRequested = errors.New("projection: a rebuild is already requested")

// RebuildRequestKey returns the key recording a rebuild of projection name
// asked for by a process without the event store (RequestRebuild), until a
// process serving requests (ServeRebuildRequests) has done it.
func RebuildRequestKey(name string) string { return query.Tag(name) + ":rebuild" }

func rebuildClaimKey(name string) string { return query.Tag(name) + ":rebuild:claim" }

// RequestRebuild records that a forced blue/green rebuild of projection name
// is wanted, for a process that has the event store and runs
// ServeRebuildRequests (a projector) to do it: the query side of a split
// deployment never opens the store. The rebuild's progress shows in the new
// build's status like any other. It returns an error matching
// ErrRebuildRequested while an earlier request is pending or running.
func RequestRebuild(ctx context.Context, rdb redis.Cmdable, name string) error {
	if err := query.ValidateName(name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	ok, err := rdb.SetNX(ctx, RebuildRequestKey(name), time.Now().UTC().Format(time.RFC3339Nano), 0).Result()
	if err != nil {
		return fmt.Errorf("projection: request a rebuild of %s: %w", name, err)
	}
	if !ok {
		return fmt.Errorf("%w: %s", ErrRebuildRequested, name)
	}
	return nil
}

// ServeRebuildOptions configures ServeRebuildRequests.
type ServeRebuildOptions struct {
	// Config is the configuration of the rebuild's runner: Store, Redis and
	// Projection are required, as for NewRunner. Its LeaseTTL is also the
	// TTL of the claim on a request, and its ID the claim's token.
	Config Config
	// Rebuild tunes each rebuild; Force is always set.
	Rebuild RebuildOptions
	// Interval is how often Redis is asked for a pending request. Default
	// DefaultServeInterval.
	Interval time.Duration
}

// DefaultServeInterval is the default of ServeRebuildOptions.Interval.
const DefaultServeInterval = time.Second

// Validate reports options ServeRebuildRequests would refuse, as an error
// matching ErrInvalidConfig.
func (o ServeRebuildOptions) Validate() error {
	if o.Interval < 0 {
		return fmt.Errorf("%w: ServeRebuildOptions.Interval %v is negative", ErrInvalidConfig, o.Interval)
	}
	if err := o.Rebuild.Validate(); err != nil {
		return err
	}
	return o.Config.Validate()
}

// ServeRebuildRequests runs, until ctx ends, the rebuilds of
// opts.Config.Projection that RequestRebuild records, looking every
// opts.Interval: a forced blue/green Rebuild with opts.Rebuild, after which
// the request is removed, whether the rebuild succeeded or failed (the
// failure is logged and left in the new build's status). Among the processes
// serving one projection, one claims a request (a lease renewed while it
// runs) and the others leave it; if that process dies, the claim expires
// after Config.LeaseTTL and another takes the request over, resuming the
// generation from its checkpoint.
func ServeRebuildRequests(ctx context.Context, opts ServeRebuildOptions) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	cfg := opts.Config.withDefaults()
	interval := opts.Interval
	if interval == 0 {
		interval = DefaultServeInterval
	}
	name := cfg.Projection.Name()
	log := cfg.Logger.With("projection", name, "runner", cfg.ID)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n, err := cfg.Redis.Exists(ctx, RebuildRequestKey(name)).Result()
		if err != nil || n == 0 {
			if err != nil && ctx.Err() == nil {
				log.Warn("read rebuild requests", "error", err)
			}
			continue
		}
		if err := serveRequest(ctx, cfg, opts.Rebuild, log); err != nil && ctx.Err() == nil {
			log.Warn("serve a rebuild request", "error", err)
		}
	}
}

// serveRequest claims the pending request and runs it, renewing the claim
// while the rebuild runs. The claim is an internal/lease holding: the
// rebuild stops as soon as the claim is lost, and also when the holder can
// no longer prove it holds it (renewals failing until the holding's expiry),
// since another process may then have taken the request over.
func serveRequest(ctx context.Context, cfg Config, opts RebuildOptions, log *slog.Logger) error {
	name := cfg.Projection.Name()
	claim, err := lease.New(lease.Config{Redis: cfg.Redis, Key: rebuildClaimKey(name), Owner: cfg.ID, TTL: cfg.LeaseTTL})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	// A claim this process still holds (its release failed) is taken again
	// rather than waited out.
	held, err := claim.TryAcquire(ctx)
	switch {
	case errors.Is(err, lease.ErrHeld):
		return nil // another process serves it
	case err != nil:
		return err
	}
	// The request may have been served between the caller's look and the
	// claim: its server removes it before releasing the claim, so a claim
	// taken now sees the removal.
	if n, err := cfg.Redis.Exists(ctx, RebuildRequestKey(name)).Result(); err != nil || n == 0 {
		rel, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = held.Release(rel)
		return err
	}
	rctx, stop := held.Keep(ctx)
	log.Info("rebuild requested: starting")
	opts.Force = true
	rcfg := cfg
	rcfg.ID = "" // the rebuild's runner takes its own lease token
	res, err := Rebuild(rctx, rcfg, opts)
	lost := rctx.Err() != nil && ctx.Err() == nil // the claim ended under the rebuild
	stop()
	rel, relCancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer relCancel()
	defer func() { _ = held.Release(rel) }()
	if err != nil && (ctx.Err() != nil || lost) {
		return err // cut short: the request stays for whoever serves it next
	}
	if err != nil {
		log.Error("requested rebuild failed", "error", err)
	} else {
		log.Info("requested rebuild done", "build", query.Build{Version: res.Version, Generation: res.Generation}.String())
	}
	if derr := cfg.Redis.Del(rel, RebuildRequestKey(name)).Err(); derr != nil {
		return fmt.Errorf("remove the rebuild request of %s: %w", name, derr)
	}
	return nil
}

package projection

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/lease"
	"github.com/eventline/eventline/internal/retry"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
)

// Runner keeps one version of a projection up to date with the log. Run it in
// as many processes as wanted: one holds the lease and writes, the others
// stand by.
type Runner struct {
	cfg     Config
	proj    Projection
	name    string
	version int
	handles map[string]bool
	m       *metrics
	log     *slog.Logger
	tracer  trace.Tracer

	// pinned, when set, is the only build this runner writes (Rebuild's
	// runner). Otherwise the runner writes the active generation of its
	// version, or generation 0 while another version is active.
	pinned *query.Build
	// build is the build of the current or last session, and the keys below
	// are its keys; only Run's goroutine changes them (use).
	build                                       query.Build
	leaseKey, checkpointKey, statusKey, deadKey string
	// lease is the build's lease (internal/lease) as this runner takes it;
	// held the holding of the current or last session, nil when none.
	lease     *lease.Lease
	held      *lease.Held
	activeKey string

	// part is the partition this runner applies (the zero Partition: the
	// whole projection, unpartitioned); partKey the projection's partition
	// key function. A Runner of a partitioned projection (parts > 1) runs no
	// session of its own: Run shares the partitions with the other runners
	// (group.go) and runs a partition runner for each it takes.
	part    query.Partition
	partKey func(eventstore.Record) string
	parts   int
	// applying is, in the Runner of a partitioned projection, the partition
	// runners it runs now; guarded by mu.
	applying map[int]*Runner

	mu sync.Mutex
	st Status // this runner's view; guarded by mu
	// recordedAt is when the last applied record was committed to the log.
	recordedAt time.Time

	// Hooks for tests, set before Run.
	beforeExec  func()
	afterCommit func([]eventstore.Record)
	noRelease   bool
}

// NewRunner returns a Runner for cfg. It does not connect to anything.
func NewRunner(cfg Config) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	p := cfg.Projection
	r := &Runner{cfg: cfg, proj: p, name: p.Name(), version: p.Version(), log: cfg.Logger.With(
		"projection", p.Name(), "version", p.Version(), "runner", cfg.ID)}
	if hs := p.Handles(); len(hs) > 0 {
		r.handles = make(map[string]bool, len(hs))
		for _, h := range hs {
			r.handles[h] = true
		}
	}
	var err error
	if r.m, err = newMetrics(cfg.Registerer, r.name, r.version); err != nil {
		return nil, fmt.Errorf("projection %s: register metrics: %w", r.name, err)
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	r.tracer = tp.Tracer(ScopeName)
	r.activeKey = query.ActiveKey(r.name)
	r.parts, r.partKey = partitionsOf(p)
	r.st = Status{Name: r.name, Version: r.version, State: StateStarting, Runner: cfg.ID, LagEvents: -1, LagSeconds: -1}
	r.use(query.Build{Version: r.version})
	r.m.setState(StateStarting)
	return r, nil
}

// use makes b the build the runner's next session writes.
func (r *Runner) use(b query.Build) {
	r.build = b
	r.leaseKey = partLeaseKey(r.name, b, r.part)
	r.lease, _ = lease.New(lease.Config{Redis: r.cfg.Redis, Key: r.leaseKey, Owner: r.cfg.ID, TTL: r.cfg.LeaseTTL})
	r.held = nil
	r.checkpointKey = query.PartitionCheckpointKey(r.name, b, r.part)
	r.statusKey = partStatusKey(r.name, b, r.part)
	r.deadKey = partDeadLetterKey(r.name, b, r.part)
	r.mu.Lock()
	if r.st.Generation != b.Generation {
		r.st.Checkpoint, r.recordedAt = eventstore.Position{}, time.Time{}
	}
	r.st.Generation = b.Generation
	r.mu.Unlock()
}

// target returns the build the next session writes: the pinned one, else
// the active generation of the runner's version, else generation 0 of it
// while no newer version is active. Once a newer version is active it keeps
// the current build, whose session then stops with ErrSuperseded.
func (r *Runner) target(ctx context.Context) (query.Build, error) {
	if r.pinned != nil {
		return *r.pinned, nil
	}
	active, err := activeBuild(ctx, r.cfg.Redis, r.name)
	switch {
	case err != nil:
		return query.Build{}, err
	case active.Version == r.version:
		return active, nil
	case active.Version > r.version:
		return r.build, nil
	}
	return query.Build{Version: r.version}, nil
}

// follow moves the runner to build b before it takes a lease, releasing the
// lease of the build it leaves so that its removal can begin at once. The
// lease key of a build it leaves for a newer one is deleted, not just
// released: that build is being removed, and a released key would outlive
// the removal if the removal had already scanned past it.
func (r *Runner) follow(ctx context.Context, b query.Build) {
	if b == r.build {
		return
	}
	if r.build.Before(b) {
		r.dropLease(ctx) // the superseded build is removed: its lease key too
	} else {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		r.release(rctx)
		cancel()
	}
	r.log.Info("projection runner writes the active generation", "build", b.String(), "was", r.build.String())
	r.use(b)
}

// release gives up the runner's holding, if any, best effort.
func (r *Runner) release(ctx context.Context) {
	if r.held != nil {
		_ = r.held.Release(ctx)
		r.held = nil
	}
}

// dropLease deletes the lease key of a superseded build while this runner
// still holds it, best effort: a released lease keeps its key (for the
// fencing counter), and a retired build must leave no key behind.
func (r *Runner) dropLease(ctx context.Context) {
	if r.held == nil {
		return
	}
	f := r.held.Fence()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	_ = dropLeaseScript.Run(rctx, r.cfg.Redis, []string{r.leaseKey}, f.Owner, f.TokenArg()).Err()
	r.held = nil
}

// ID returns the runner's lease token.
func (r *Runner) ID() string { return r.cfg.ID }

func (r *Runner) setState(s State, err error) {
	r.mu.Lock()
	old := r.st.State
	r.st.State = s
	if err != nil {
		r.st.Error = err.Error()
	} else if s != StateStopped {
		r.st.Error, r.st.StuckAt = "", ""
	}
	r.mu.Unlock()
	if old == s {
		return
	}
	r.m.setState(s)
	switch {
	case s == StateRetrying:
		r.log.Warn("projection runner retrying", "error", err)
	case s == StateStopped && err != nil:
		r.log.Error("projection runner stopped", "error", err)
	default:
		r.log.Info("projection runner state", "state", string(s), "was", string(old))
	}
}

// Run runs the runner until ctx ends (it then returns nil) or the projection
// stops on an error: ErrStuck, ErrCommandFailed, ErrSuperseded (a newer
// version is active, at start or after a switch), ErrNewVersion (refused by
// ActivateIfNone) or ErrCheckpointLost (its build has model keys but no
// checkpoint: it never applies the log from the start over them). Redis and store failures are retried for ever, with
// back-off. A new generation of the runner's own version (a forced rebuild)
// does not stop it: it leaves the old generation, whose keys are then
// removed, and goes on writing the new one, standing by while the rebuild's
// runner still holds its lease. On return it releases the lease, so that a
// standby takes over at once.
func (r *Runner) Run(ctx context.Context) error {
	if r.parts > 1 && !r.part.Partitioned() {
		return r.runGroup(ctx)
	}
	defer func() {
		if r.noRelease {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		r.release(rctx)
	}()
	r.warnEviction(ctx)
	backoff := retry.New(r.cfg.MinBackoff, r.cfg.MaxBackoff, retry.EqualJitter)
	retryIn := r.cfg.LeaseTTL / 3
	for {
		if ctx.Err() != nil {
			r.stopped(nil)
			return nil
		}
		b, err := r.target(ctx)
		ok := false
		if err == nil {
			r.follow(ctx, b)
			var h *lease.Held
			h, err = r.lease.TryAcquire(ctx)
			switch {
			case err == nil:
				r.held, ok = h, true
			case errors.Is(err, lease.ErrHeld):
				err = nil
			default:
				err = fmt.Errorf("take lease: %w", err)
			}
		}
		var wait time.Duration
		switch {
		case ctx.Err() != nil:
			continue
		case err != nil:
			r.setState(StateRetrying, err)
			r.m.retries.Inc()
			wait = backoff.Next()
		case !ok:
			r.setState(StateStandby, nil)
			wait = retryIn
			// A holder that stopped renewing: try again as its lease expires.
			if st, err := lease.Read(ctx, r.cfg.Redis, r.leaseKey); err == nil && st.Left > 0 {
				wait = min(wait, st.Left+time.Millisecond)
			}
		default:
			err = r.session(ctx)
			switch {
			case ctx.Err() != nil:
				continue
			case errors.Is(err, ErrFenced):
				r.setState(StateStandby, nil)
				backoff.Reset()
				wait = retryIn
			case errors.Is(err, ErrSuperseded):
				// The build's keys are being removed: write nothing more to
				// them, not even a status. A newer generation of our own
				// version is ours to follow; a newer version is not.
				active, aerr := activeBuild(ctx, r.cfg.Redis, r.name)
				switch {
				case aerr != nil:
					r.setState(StateRetrying, aerr)
					r.m.retries.Inc()
					wait = backoff.Next()
				case r.pinned == nil && active.Version == r.version:
					continue
				default:
					r.setState(StateStopped, err)
					r.dropLease(ctx)
					return err
				}
			case errors.Is(err, ErrStuck) || errors.Is(err, ErrCommandFailed) || errors.Is(err, ErrNewVersion) ||
				errors.Is(err, ErrCheckpointLost):
				r.stopped(err)
				return err
			case err != nil:
				r.setState(StateRetrying, err)
				r.m.retries.Inc()
				wait = backoff.Next()
			}
		}
		_ = retry.Sleep(ctx, wait)
	}
}

// warnEviction logs a warning when the Redis of the read model may evict
// keys, once per Run: the status command warns too, but a projector's log is
// where an operator looks when a projection stopped.
func (r *Runner) warnEviction(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := CheckEvictionPolicy(cctx, r.cfg.Redis); errors.Is(err, ErrEvictingPolicy) {
		r.log.Warn("redis may evict read model keys", "error", err)
	}
}

// Checkpoint returns the position of the last record this runner applied (or
// found in Redis when its session began).
//
// The Runner of a partitioned projection returns the lowest checkpoint of
// the partitions it applies now (Start when none).
func (r *Runner) Checkpoint() eventstore.Position {
	r.mu.Lock()
	if r.applying == nil {
		defer r.mu.Unlock()
		return r.st.Checkpoint
	}
	cs := make([]*Runner, 0, len(r.applying))
	for _, c := range r.applying {
		cs = append(cs, c)
	}
	r.mu.Unlock()
	var low eventstore.Position
	for i, c := range cs {
		if cp := c.Checkpoint(); i == 0 || cp.Before(low) {
			low = cp
		}
	}
	return low
}

// transient reports errors after which retrying the same work may succeed:
// the connection failed, or Redis is loading, read-only, busy or out of
// memory (maxmemory reached under noeviction: writes are refused whole until
// memory is freed).
func transient(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) ||
		errors.Is(err, eventstore.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "BUSY", "MOVED", "ASK", "OOM"} {
			if redis.HasErrorPrefix(err, p) {
				return true
			}
		}
		return false
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}

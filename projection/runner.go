package projection

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/query"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Policy says what a runner does with a record the projection keeps failing
// to apply.
type Policy int

const (
	// Stop applies the records before it, then stops the runner with an error
	// matching ErrStuck; Status shows the record's position and the error.
	Stop Policy = iota
	// DeadLetter records it in the version's dead-letter list (DeadLetterKey),
	// atomically with the checkpoint, and goes on.
	DeadLetter
)

// Activation says when a runner makes its version the active one.
type Activation int

const (
	// ActivateIfNewer (the default) makes the runner's version active once it
	// has caught up, if no version is active or the active one is older: a
	// runner deployed with a bumped Version rebuilds blue/green by itself.
	// The switch waits until the new version has passed both the head of the
	// log seen when the runner took the lease and the checkpoint of the
	// version it replaces, so queries never see a half-built model nor go
	// back in time; the old version's runners then stop with ErrSuperseded
	// and its keys are removed in the background.
	ActivateIfNewer Activation = iota
	// ActivateIfNone makes the runner's version active once it has caught up,
	// only if no version is active. A runner whose version is newer than the
	// active one refuses to start (ErrNewVersion): the operator rebuilds
	// explicitly, with the replay command or Rebuild.
	ActivateIfNone
	// ActivateNever leaves the active version alone; whoever builds the
	// version switches with Activate when it decides to.
	ActivateNever
)

// Defaults for Config fields left zero.
const (
	DefaultBatchSize     = 1000
	DefaultFlushInterval = 2 * time.Millisecond
	DefaultLeaseTTL      = 5 * time.Second
	DefaultMaxAttempts   = 3
	DefaultMinBackoff    = 50 * time.Millisecond
	DefaultMaxBackoff    = 2 * time.Second
	DefaultStatusEvery   = time.Second
	DefaultRetireDelay   = 2 * time.Second
)

// Config configures a Runner. Store, Redis and Projection are required; every
// other field has a usable zero value.
type Config struct {
	// Store is the log to read.
	Store eventstore.Store
	// Redis holds the read model, the checkpoint and the lease. Every key of
	// one projection shares a hash tag, so a Redis Cluster client works too.
	Redis redis.UniversalClient
	// Projection is the user code.
	Projection Projection
	// BatchSize bounds the records of one transaction; FlushInterval bounds how
	// long the first record of a batch waits for more. Defaults 1000 and 2 ms.
	BatchSize     int
	FlushInterval time.Duration
	// LeaseTTL is how long a lease lives without renewal; the holder renews it
	// every third of it, and a standby takes over at most about LeaseTTL after
	// the holder died. Default 5 s.
	LeaseTTL time.Duration
	// MaxAttempts is how many times a batch is applied before the record it
	// fails on is handled by OnPoison. Default 3.
	MaxAttempts int
	// OnPoison is the policy for such records. Default Stop.
	OnPoison Policy
	// Activation says when this runner's version becomes active. Default
	// ActivateIfNewer.
	Activation Activation
	// RetireDelay is how long the keys of a version replaced by a switch are
	// kept before their removal starts, so that queries that resolved the old
	// version just before the switch can finish their reads. Default 2 s.
	RetireDelay time.Duration
	// MinBackoff and MaxBackoff bound the pause after Redis or the store
	// failed (doubling). Defaults 50 ms and 2 s.
	MinBackoff, MaxBackoff time.Duration
	// StatusEvery is how often the lease holder reads the head of the log and
	// writes its status hash. Default 1 s.
	StatusEvery time.Duration
	// ID names this runner in the lease and in Status.Holder; it must be unique
	// among the runners of a projection. Default: host:pid:random.
	ID string
	// Logger gets one line per change of state. nil means slog.Default().
	Logger *slog.Logger
	// Registerer, when set, gets the runner's Prometheus metrics. Runners of
	// one projection in the same process share them.
	Registerer prometheus.Registerer
}

// Validate reports a Config that New would refuse.
func (c Config) Validate() error {
	switch {
	case c.Store == nil:
		return fmt.Errorf("%w: Config.Store is nil", ErrInvalidConfig)
	case c.Redis == nil:
		return fmt.Errorf("%w: Config.Redis is nil", ErrInvalidConfig)
	case c.BatchSize < 0 || c.FlushInterval < 0 || c.LeaseTTL < 0 || c.MaxAttempts < 0 ||
		c.MinBackoff < 0 || c.MaxBackoff < 0 || c.StatusEvery < 0 || c.RetireDelay < 0:
		return fmt.Errorf("%w: negative size or duration", ErrInvalidConfig)
	case c.LeaseTTL != 0 && c.LeaseTTL < 30*time.Millisecond:
		return fmt.Errorf("%w: Config.LeaseTTL %v is below 30ms", ErrInvalidConfig, c.LeaseTTL)
	case c.OnPoison != Stop && c.OnPoison != DeadLetter:
		return fmt.Errorf("%w: unknown Config.OnPoison %d", ErrInvalidConfig, c.OnPoison)
	case c.Activation < ActivateIfNewer || c.Activation > ActivateNever:
		return fmt.Errorf("%w: unknown Config.Activation %d", ErrInvalidConfig, c.Activation)
	}
	return Validate(c.Projection)
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	def(&c.FlushInterval, DefaultFlushInterval)
	def(&c.LeaseTTL, DefaultLeaseTTL)
	def(&c.MinBackoff, DefaultMinBackoff)
	def(&c.MaxBackoff, max(DefaultMaxBackoff, c.MinBackoff))
	def(&c.StatusEvery, DefaultStatusEvery)
	def(&c.RetireDelay, DefaultRetireDelay)
	if c.ID == "" {
		host, _ := os.Hostname()
		var b [6]byte
		_, _ = rand.Read(b[:])
		c.ID = host + ":" + strconv.Itoa(os.Getpid()) + ":" + hex.EncodeToString(b[:])
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

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

	// pinned, when set, is the only build this runner writes (Rebuild's
	// runner). Otherwise the runner writes the active generation of its
	// version, or generation 0 while another version is active.
	pinned *query.Build
	// build is the build of the current or last session, and the keys below
	// are its keys; only Run's goroutine changes them (use).
	build                                       query.Build
	leaseKey, checkpointKey, statusKey, deadKey string
	activeKey                                   string

	mu sync.Mutex
	st Status // this runner's view; guarded by mu
	// recordedAt is when the last applied record was committed to the log.
	recordedAt time.Time

	// Hooks for tests, set before Run.
	beforeExec  func()
	afterCommit func([]eventstore.Record)
	noRelease   bool
}

// New returns a Runner for cfg. It does not connect to anything.
func New(cfg Config) (*Runner, error) {
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
	r.activeKey = query.ActiveKey(r.name)
	r.st = Status{Name: r.name, Version: r.version, State: StateStarting, Runner: cfg.ID, LagEvents: -1, LagSeconds: -1}
	r.use(query.Build{Version: r.version})
	r.m.setState(StateStarting)
	return r, nil
}

// use makes b the build the runner's next session writes.
func (r *Runner) use(b query.Build) {
	r.build = b
	r.leaseKey = leaseKey(r.name, b)
	r.checkpointKey = query.CheckpointKey(r.name, b)
	r.statusKey = statusKey(r.name, b)
	r.deadKey = DeadLetterKey(r.name, b)
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
// lease of the build it leaves so that its removal can begin at once.
func (r *Runner) follow(ctx context.Context, b query.Build) {
	if b == r.build {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	_, _ = runScript(rctx, r.cfg.Redis, releaseScript, r.leaseKey, r.cfg.ID)
	r.log.Info("projection runner writes the active generation", "build", b.String(), "was", r.build.String())
	r.use(b)
}

// ID returns the runner's lease token.
func (r *Runner) ID() string { return r.cfg.ID }

// Status returns this runner's status: its own state (standby, running, ...)
// and what it knows of the checkpoint and head, completed from Redis with the
// active version, the lease holder and the dead-letter count when Redis
// answers.
func (r *Runner) Status(ctx context.Context) (Status, error) {
	r.mu.Lock()
	s := r.st
	s.RecordedAt = r.recordedAt
	r.mu.Unlock()
	s.fillLag(s.RecordedAt, time.Now())
	rs, err := ReadStatus(ctx, r.cfg.Redis, r.name, query.Build{Version: s.Version, Generation: s.Generation})
	if err != nil {
		return s, err
	}
	s.ActiveVersion, s.ActiveGeneration, s.Active = rs.ActiveVersion, rs.ActiveGeneration, rs.Active
	s.Holder, s.DeadLetters = rs.Holder, rs.DeadLetters
	if s.Checkpoint.Before(rs.Checkpoint) { // a standby learns progress from Redis
		s.Checkpoint = rs.Checkpoint
		s.fillLag(time.Time{}, time.Now())
	}
	return s, nil
}

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
	defer func() {
		if r.noRelease {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_, _ = runScript(rctx, r.cfg.Redis, releaseScript, r.leaseKey, r.cfg.ID)
	}()
	r.warnEviction(ctx)
	backoff := r.cfg.MinBackoff
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
			ok, err = runScript(ctx, r.cfg.Redis, acquireScript, r.leaseKey, r.cfg.ID, r.cfg.LeaseTTL.Milliseconds())
			if err != nil {
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
			wait, backoff = backoff, min(2*backoff, r.cfg.MaxBackoff)
		case !ok:
			r.setState(StateStandby, nil)
			wait = retryIn
		default:
			err = r.session(ctx)
			switch {
			case ctx.Err() != nil:
				continue
			case errors.Is(err, ErrFenced):
				r.setState(StateStandby, nil)
				backoff = r.cfg.MinBackoff
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
					wait, backoff = backoff, min(2*backoff, r.cfg.MaxBackoff)
				case r.pinned == nil && active.Version == r.version:
					continue
				default:
					r.setState(StateStopped, err)
					return err
				}
			case errors.Is(err, ErrStuck) || errors.Is(err, ErrCommandFailed) || errors.Is(err, ErrNewVersion) ||
				errors.Is(err, ErrCheckpointLost):
				r.stopped(err)
				return err
			case err != nil:
				r.setState(StateRetrying, err)
				r.m.retries.Inc()
				wait, backoff = backoff, min(2*backoff, r.cfg.MaxBackoff)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
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

// stopped records the final state in memory and, best effort, in Redis: a
// runner that still holds its lease writes it in the status hash. One that
// stops cleanly without having applied anything to a build that has nothing
// (no checkpoint) removes the build's status instead, so that a runner that
// never ran leaves no entry behind.
func (r *Runner) stopped(err error) {
	r.setState(StateStopped, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _ = r.putStatus(ctx, err == nil && r.Checkpoint().IsZero())
}

// writeStatus writes this runner's status hash. It is fenced like a batch:
// if the runner no longer holds the lease it writes nothing and returns an
// error matching ErrFenced, so the hash is always the holder's word.
func (r *Runner) writeStatus(ctx context.Context) error {
	ok, err := r.putStatus(ctx, false)
	if err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	if !ok {
		return fmt.Errorf("%w: lease %s lost; status not written", ErrFenced, r.leaseKey)
	}
	return nil
}

// putStatus runs statusScript; ok is false when the runner does not hold
// the lease. With forget, a build that has no checkpoint and is not active
// loses its status entry instead (see statusScript).
func (r *Runner) putStatus(ctx context.Context, forget bool) (ok bool, err error) {
	r.mu.Lock()
	s := r.st
	r.mu.Unlock()
	mode := "keep"
	if forget {
		mode = "forget"
	}
	n, err := statusScript.Run(ctx, r.cfg.Redis,
		[]string{r.leaseKey, r.statusKey, VersionsKey(r.name), r.checkpointKey, r.activeKey},
		r.cfg.ID, r.build.String(), mode,
		fState, string(s.State), fHolder, r.cfg.ID, fHead, s.Head.String(), fHeadAt, timeNano(s.HeadAt),
		fError, s.Error, fStuckAt, s.StuckAt, fUpdatedAt, time.Now().UnixNano()).Int()
	if err != nil || n == 0 {
		return false, err
	}
	if n == 1 {
		// The set of projections is outside the projection's hash tag (it
		// lists them all), so it is written apart, after the fenced write.
		err = r.cfg.Redis.SAdd(ctx, ProjectionsKey, r.name).Err()
	}
	return true, err
}

func timeNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// item is what the subscription goroutine hands the runner.
type item struct {
	rec eventstore.Record
	err error
}

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
	cp, err := query.ReadCheckpoint(ctx, rdb, r.name, r.build)
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
	activating := r.cfg.Activation != ActivateNever && active != r.build
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
	if active == r.build {
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

	ch := make(chan item, 2*r.cfg.BatchSize)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for rec, err := range r.cfg.Store.Subscribe(sctx, cp) {
			select {
			case ch <- item{rec, err}:
			case <-sctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	renewEvery := r.cfg.LeaseTTL / 3
	lastRenew := time.Now()
	lastStatus := time.Now()
	tick := time.NewTicker(min(renewEvery, r.cfg.StatusEvery))
	defer tick.Stop()
	flush := time.NewTimer(time.Hour)
	flush.Stop()
	defer flush.Stop()
	batch := make([]eventstore.Record, 0, r.cfg.BatchSize)

	for {
		// Renewing touches the lease key, which would abort a batch's WATCH; it
		// happens here, between batches, on the goroutine that runs them.
		if time.Since(lastRenew) >= renewEvery {
			ok, err := runScript(ctx, rdb, renewScript, r.leaseKey, r.cfg.ID, r.cfg.LeaseTTL.Milliseconds())
			if err != nil {
				return fmt.Errorf("renew lease: %w", err)
			}
			if !ok {
				return fmt.Errorf("%w: lease %s taken over", ErrFenced, r.leaseKey)
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

		var subErr error
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := tryActivate(); err != nil {
				return err
			}
			continue
		case it := <-ch:
			if it.err != nil {
				subErr = it.err
				break
			}
			batch = append(batch, it.rec)
			flush.Reset(r.cfg.FlushInterval)
		collect:
			for len(batch) < cap(batch) {
				select {
				case it := <-ch:
					if it.err != nil {
						subErr = it.err
						break collect
					}
					batch = append(batch, it.rec)
				case <-flush.C:
					break collect
				}
			}
			flush.Stop()
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

// checkEmpty is called when the runner's build has no checkpoint. It
// returns an error matching ErrCheckpointLost if the build nevertheless has
// keys besides its lease and status: a model whose checkpoint was evicted,
// deleted or lost, which applying the log from its start would count twice.
//
// It asks the keyspace itself (SCAN of the build's prefix) rather than a
// marker the batches would write, because whatever removed the checkpoint
// (an eviction, a DEL, a failover) can remove a marker too, while any model
// key left proves that records were applied. The scan costs a pass over the
// keyspace, paid only while a build has no checkpoint: at the start of a new
// build, before its first batch.
func (r *Runner) checkEmpty(ctx context.Context, active query.Build) error {
	rdb, err := nodeOf(ctx, r.cfg.Redis, r.checkpointKey)
	if err != nil {
		return fmt.Errorf("projection %s v%s: look for a model without checkpoint: %w", r.name, r.build, err)
	}
	prefix := query.Prefix(r.name, r.build)
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return fmt.Errorf("projection %s v%s: look for a model without checkpoint: %w", r.name, r.build, err)
		}
		for _, k := range keys {
			if k != r.leaseKey && k != r.statusKey {
				return r.checkpointLost(k, active)
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// checkpointLost is the error of a build found with key but no checkpoint,
// with the fix that fits it.
func (r *Runner) checkpointLost(key string, active query.Build) error {
	var fix string
	switch {
	case r.build == active:
		fix = fmt.Sprintf("rebuild it into a fresh generation beside the live one with \"replay --force %s\" "+
			"(projection.Rebuild with RebuildOptions.Force): this build keeps serving queries until the switch; "+
			"then restart the projectors that stopped with this error", r.name)
	case r.build.Version == active.Version:
		fix = fmt.Sprintf("start this generation over with \"replay --force --restart %s\" "+
			"(projection.Rebuild with RebuildOptions.Force and Restart)", r.name)
	default:
		fix = fmt.Sprintf("start this build over with \"replay --restart %s\" "+
			"(projection.Rebuild with RebuildOptions.Restart), which discards its keys first", r.name)
	}
	return fmt.Errorf("%w: %s v%s has no checkpoint but has model keys (%s): applying the log from its start "+
		"would apply every record a second time. The checkpoint was evicted or deleted; the read side's Redis "+
		"needs maxmemory-policy noeviction (see docs/operations.md). To repair, %s",
		ErrCheckpointLost, r.name, r.build, key, fix)
}

// nodeOf returns the client of the node holding key: with Redis Cluster,
// where SCAN lists one node's keys, the master of key's slot, which holds
// every key of the same hash tag; otherwise rdb itself.
func nodeOf(ctx context.Context, rdb redis.UniversalClient, key string) (redis.Cmdable, error) {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return cc.MasterForKey(ctx, key)
	}
	return rdb, nil
}

// Checkpoint returns the position of the last record this runner applied (or
// found in Redis when its session began).
func (r *Runner) Checkpoint() eventstore.Position {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st.Checkpoint
}

// activate makes the runner's build active per Config.Activation once it
// has reached target. done is false while a blue/green switch must wait for
// the new build to pass the old one's checkpoint; previous is the build
// replaced (zero: none).
func (r *Runner) activate(ctx context.Context, target eventstore.Position) (done bool, previous query.Build, err error) {
	if r.cfg.Activation == ActivateIfNone {
		_, _, err := activate(ctx, r.cfg.Redis, r.name, r.build, target, true)
		return err == nil, previous, err
	}
	previous, err = switchTo(ctx, r.cfg.Redis, r.name, r.build, r.cfg.ID, target)
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
	if sleep(ctx, r.cfg.RetireDelay) != nil {
		return
	}
	start := time.Now()
	n, err := removeBuild(ctx, r.cfg.Redis, r.name, b, "", 0)
	switch {
	case err != nil && ctx.Err() == nil:
		r.log.Warn("removal of an old projection build failed; the next session resumes it", "old_build", b.String(), "error", err)
	case err == nil:
		r.log.Info("old projection build removed", "old_build", b.String(), "keys", n, "duration", time.Since(start))
	}
}

// refreshStatus reads the head of the log and writes the status hash.
func (r *Runner) refreshStatus(ctx context.Context) error {
	head, err := r.cfg.Store.Head(ctx)
	if err != nil {
		return fmt.Errorf("read head of the log: %w", err)
	}
	r.mu.Lock()
	r.st.Head, r.st.HeadAt = head, time.Now()
	s := r.st
	recordedAt := r.recordedAt
	r.mu.Unlock()
	s.fillLag(recordedAt, time.Now())
	r.m.lagEvents.Set(float64(s.LagEvents))
	r.m.lagSeconds.Set(s.LagSeconds)
	return r.writeStatus(ctx)
}

// applyError is a failure of Projection.Apply on batch[index].
type applyError struct {
	index int
	err   error
}

func (e *applyError) Error() string { return e.err.Error() }
func (e *applyError) Unwrap() error { return e.err }

// commit applies a batch and advances the checkpoint. A record that fails
// MaxAttempts times is handled by the OnPoison policy.
func (r *Runner) commit(ctx context.Context, batch []eventstore.Record) error {
	attempts, at := 0, -1
	for len(batch) > 0 {
		err := r.exec(ctx, batch, nil)
		var ae *applyError
		if !errors.As(err, &ae) {
			return err
		}
		if transient(ae.err) || ctx.Err() != nil {
			return ae.err
		}
		if ae.index != at {
			attempts, at = 0, ae.index
		}
		attempts++
		if attempts < r.cfg.MaxAttempts {
			r.log.Debug("projection apply failed, retrying", "position", batch[at].Position.String(), "error", ae.err)
			t := time.NewTimer(r.cfg.MinBackoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			continue
		}
		bad := batch[at]
		if r.cfg.OnPoison == Stop {
			if at > 0 {
				if err := r.exec(ctx, batch[:at], nil); err != nil {
					return err
				}
			}
			stuck := fmt.Errorf("%w: %s at position %s (stream %q version %d, type %q) after %d attempts: %w",
				ErrStuck, r.name, bad.Position, bad.StreamID, bad.Version, bad.Type, attempts, ae.err)
			r.mu.Lock()
			r.st.StuckAt = bad.Position.String()
			r.mu.Unlock()
			return stuck
		}
		if err := r.exec(ctx, batch[:at+1], ae.err); err != nil {
			return err
		}
		r.log.Warn("projection record dead-lettered", "position", bad.Position.String(), "type", bad.Type, "error", ae.err)
		batch, attempts, at = batch[at+1:], 0, -1
	}
	return nil
}

// DeadLetterEntry is an entry of a dead-letter list, stored as JSON.
type DeadLetterEntry struct {
	Position string    `json:"position"`
	StreamID string    `json:"stream_id"`
	Version  uint64    `json:"version"`
	Type     string    `json:"type"`
	EventID  string    `json:"event_id"`
	Error    string    `json:"error"`
	At       time.Time `json:"at"`
}

// errWatchFailed means EXEC aborted because the lease or the active version
// changed after exec checked them.
var errWatchFailed = errors.New("projection: watched key changed")

// exec runs one batch, checking again after an aborted EXEC: the lease key
// changes when another runner takes over (the batch is then refused), the
// active-version key when any version is switched, which concerns this
// runner only if a newer version became active.
func (r *Runner) exec(ctx context.Context, batch []eventstore.Record, dead error) error {
	for range 5 {
		if err := r.execOnce(ctx, batch, dead); !errors.Is(err, errWatchFailed) {
			return err
		}
	}
	r.m.fenced.Inc()
	return fmt.Errorf("%w: lease %s or active version changed during the batch", ErrFenced, r.leaseKey)
}

// execOnce is one attempt at one batch: WATCH the lease and the active
// version, check the lease is ours and no newer version is active, apply the
// records into a MULTI pipeline, add the checkpoint, EXEC. If a watched key
// changes after the check (another runner took over, a version was
// switched), EXEC aborts and nothing lands. When dead is set, the batch's
// last record is dead-lettered with that error instead of applied.
func (r *Runner) execOnce(ctx context.Context, batch []eventstore.Record, dead error) error {
	start := time.Now()
	applied, skipped := 0, 0
	err := r.cfg.Redis.Watch(ctx, func(rtx *redis.Tx) error {
		if err := r.fence(ctx, rtx); err != nil {
			return err
		}
		pipe := rtx.TxPipeline()
		tx := &Tx{name: r.name, build: r.build, pipe: pipe, read: rtx}
		recs := batch
		if dead != nil {
			recs = batch[:len(batch)-1]
		}
		for i := range recs {
			rec := &recs[i]
			if r.handles != nil && !r.handles[rec.Type] {
				skipped++
				continue
			}
			if err := r.proj.Apply(ctx, tx, *rec); err != nil {
				return &applyError{index: i, err: err}
			}
			applied++
		}
		// The write helpers' merged writes, before the checkpoint.
		tx.flush(ctx)
		last := batch[len(batch)-1]
		if dead != nil {
			b, _ := json.Marshal(DeadLetterEntry{Position: last.Position.String(), StreamID: last.StreamID, Version: last.Version,
				Type: last.Type, EventID: last.ID.String(), Error: dead.Error(), At: time.Now().UTC()})
			pipe.RPush(ctx, r.deadKey, b)
		}
		pipe.HSet(ctx, r.checkpointKey,
			query.FieldPosition, last.Position.String(),
			query.FieldCommit, strconv.FormatUint(last.Position.Commit, 10),
			query.FieldPrepare, strconv.FormatUint(last.Position.Prepare, 10),
			query.FieldRecordedAt, timeNano(last.RecordedAt),
			query.FieldUpdatedAt, time.Now().UnixNano())
		// Announce the checkpoint from inside the transaction: a waiter
		// (query.Watcher) is woken exactly when the checkpoint is visible,
		// never before; a fenced or aborted EXEC announces nothing.
		pipe.Publish(ctx, query.CommitChannel(r.name), query.CommitMessage(r.build, last.Position.String()))
		if r.beforeExec != nil {
			r.beforeExec()
		}
		cmds, err := pipe.Exec(ctx)
		if redis.HasErrorPrefix(err, "EXECABORT") {
			// Redis refused a command while queueing it and discarded the
			// whole transaction: nothing landed. Report why; a full Redis
			// (OOM under noeviction) is waited out like an outage.
			for _, c := range cmds {
				if cerr := c.Err(); cerr != nil && cerr != err {
					return fmt.Errorf("%w (nothing of the batch landed): %w", cerr, err)
				}
			}
		}
		return err
	}, r.leaseKey, r.activeKey)
	switch {
	case err == nil:
	case errors.Is(err, redis.TxFailedErr):
		return errWatchFailed
	case errors.Is(err, ErrSuperseded):
		r.m.fenced.Inc()
		return err
	case errors.Is(err, ErrFenced):
		r.m.fenced.Inc()
		return err
	case transient(err):
		return err
	default:
		var ae *applyError
		if errors.As(err, &ae) {
			return err
		}
		var rerr redis.Error
		if errors.As(err, &rerr) {
			return fmt.Errorf("%w: %s: batch ending at %s: %w", ErrCommandFailed, r.name, batch[len(batch)-1].Position, err)
		}
		return err
	}
	last := batch[len(batch)-1]
	r.m.applied.Add(float64(applied))
	r.m.skipped.Add(float64(skipped))
	r.m.batches.Inc()
	if dead != nil {
		r.m.deadLetters.Inc()
	}
	r.m.batchSeconds.Observe(time.Since(start).Seconds())
	r.mu.Lock()
	r.st.Checkpoint = last.Position
	r.recordedAt = last.RecordedAt
	if r.st.Head.Before(last.Position) {
		r.st.Head = last.Position
	}
	r.mu.Unlock()
	if r.afterCommit != nil {
		r.afterCommit(batch)
	}
	return nil
}

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

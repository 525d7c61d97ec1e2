package query

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
)

// ErrTooManyWaiters means a Watcher already holds WatcherConfig.MaxWaiters
// waiters: the caller should answer "busy, retry later" rather than queue.
var ErrTooManyWaiters = errors.New("query: too many waiters")

// ErrWatcherClosed is returned by the methods of a closed Watcher.
var ErrWatcherClosed = errors.New("query: watcher closed")

// Defaults of WatcherConfig fields left zero.
const (
	// DefaultFallbackPoll is how often a Watcher re-checks the checkpoints
	// its waiters wait for without a notification: a safety net for a
	// notification lost to a dropped connection, not the way waiters wake.
	DefaultFallbackPoll = time.Second
	// DefaultActiveTTL bounds how stale the active build a Watcher caches
	// may be. It must stay well below the runners' RetireDelay (default 2 s):
	// see Watcher.Resolve.
	DefaultActiveTTL = 100 * time.Millisecond
	// healthEvery is how long the subscription may stay silent before the
	// Watcher pings it, so that a half-open connection is noticed.
	healthEvery = 30 * time.Second
)

// WatcherConfig configures a Watcher. Every field has a usable zero value.
type WatcherConfig struct {
	// FallbackPoll is how often waiters are re-checked without a
	// notification. Zero or negative means DefaultFallbackPoll.
	FallbackPoll time.Duration
	// MaxWaiters caps the waiters waiting at once; WaitFor refuses the
	// excess with ErrTooManyWaiters. Zero or negative means no cap.
	MaxWaiters int
	// ActiveTTL is how long Resolve reuses the active build it read; a
	// negative value disables the cache. Default DefaultActiveTTL. Keep it
	// well below the runners' RetireDelay (see Watcher.Resolve).
	ActiveTTL time.Duration
	// Logger gets a line when the subscription fails. nil means slog.Default().
	Logger *slog.Logger
}

// Watcher serves the reads of one process: it resolves active builds through
// a short-lived cache and wakes read-your-writes waiters when the runner's
// commit is published, instead of each waiter polling Redis.
//
// It holds one Redis pub/sub connection for the whole process, subscribed to
// the commit channel of every projection (CommitChannel). A runner publishes
// on that channel inside the transaction that writes its checkpoint, so a
// notification arrives only once the checkpoint is visible. On a
// notification that may satisfy a waiter, the Watcher re-reads the active
// build and its checkpoint once and wakes every waiter satisfied; the same
// re-check runs every FallbackPoll and whenever the subscription is
// (re)established, so a notification lost while disconnected delays a
// waiter by at most FallbackPoll and never loses it.
//
// A Watcher is safe for concurrent use. Close releases its connection and
// goroutine; the client belongs to the caller.
type Watcher struct {
	rdb redis.UniversalClient
	cfg WatcherConfig
	log *slog.Logger
	ps  *redis.PubSub

	cancel context.CancelFunc
	done   chan struct{} // closed when both goroutines have returned
	kick   chan struct{} // wakes the checker; capacity 1

	mu      sync.Mutex
	closed  bool
	waiting int                   // waiters registered, across projections
	checks  int                   // re-checks under way
	projs   map[string]*waitGroup // by projection name

	// cacheMu guards cache apart from mu: every query reads it.
	cacheMu sync.RWMutex
	cache   map[string]cachedView // by projection name

	statsMu sync.Mutex
	stats   WatcherStats
}

// WatcherStats counts what a Watcher did, for tests and metrics.
type WatcherStats struct {
	// Notifications is the number of commit notifications received.
	Notifications uint64
	// Subscriptions is how many times the subscription was (re)established.
	Subscriptions uint64
	// Checks is the number of re-checks of a projection's checkpoint.
	Checks uint64
}

// waitGroup is the waiters of one projection.
type waitGroup struct {
	waiters map[*waiter]struct{}
	dirty   bool // a notification may satisfy a waiter: re-check
}

type waiter struct {
	// key is the partition key the waiter reads ("" every partition).
	key      string
	position eventstore.Position
	wake     chan wakeup // capacity 1, sent to once
}

type wakeup struct {
	view *View
	err  error
}

type cachedView struct {
	build   Build
	parts   int
	expires time.Time
}

// NewWatcher returns a Watcher reading from rdb and starts its subscription.
func NewWatcher(rdb redis.UniversalClient, cfg WatcherConfig) *Watcher {
	if cfg.FallbackPoll <= 0 {
		cfg.FallbackPoll = DefaultFallbackPoll
	}
	if cfg.ActiveTTL == 0 {
		cfg.ActiveTTL = DefaultActiveTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{
		rdb: rdb, cfg: cfg, log: cfg.Logger, cancel: cancel,
		done:  make(chan struct{}),
		kick:  make(chan struct{}, 1),
		projs: make(map[string]*waitGroup),
		cache: make(map[string]cachedView),
	}
	// PSubscribe only records the pattern; the connection is made and the
	// subscription confirmed by the first Receive, which re-checks everyone.
	w.ps = rdb.PSubscribe(ctx, commitPattern)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); w.receive(ctx) }()
	go func() { defer wg.Done(); w.check(ctx) }()
	go func() { wg.Wait(); close(w.done) }()
	return w
}

// Close stops the Watcher: its goroutines return, its pub/sub connection is
// closed and every waiter gets ErrWatcherClosed.
func (w *Watcher) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	for name, g := range w.projs {
		for wt := range g.waiters {
			wt.wake <- wakeup{err: fmt.Errorf("%w: projection %q", ErrWatcherClosed, name)}
		}
		delete(w.projs, name)
	}
	w.waiting = 0
	w.mu.Unlock()
	w.cancel()
	err := w.ps.Close()
	<-w.done
	return err
}

// Stats returns what the Watcher did so far.
func (w *Watcher) Stats() WatcherStats {
	w.statsMu.Lock()
	defer w.statsMu.Unlock()
	return w.stats
}

// Waiting returns the number of waiters waiting now.
func (w *Watcher) Waiting() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.waiting
}

// settled reports whether no re-check is pending or under way.
func (w *Watcher) settled() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.checks > 0 || len(w.kick) > 0 {
		return false
	}
	for _, g := range w.projs {
		if g.dirty {
			return false
		}
	}
	return true
}

// Resolve returns a View of the active build of projection name, like the
// package-level Resolve, but reuses a build read less than ActiveTTL ago.
//
// Why that is safe with blue/green switches: the cached build was active
// when the GET that read it executed, which is after the moment t the
// Watcher started that GET; the entry expires at t + ActiveTTL. A switch
// that retires that build happens later than t, and its runner removes the
// retired keys only RetireDelay after it saw the switch. So a request that
// resolved through the cache starts before t + ActiveTTL and finds the
// build's keys until at least t + RetireDelay: it has RetireDelay -
// ActiveTTL (1.9 s with the defaults) for its reads, as a request that
// resolved at the last moment before the switch has RetireDelay.
func (w *Watcher) Resolve(ctx context.Context, name string) (*View, error) {
	if w.cfg.ActiveTTL > 0 {
		now := time.Now()
		w.cacheMu.RLock()
		c, ok := w.cache[name]
		w.cacheMu.RUnlock()
		if ok && now.Before(c.expires) {
			return &View{rdb: w.rdb, Name: name, Version: c.build.Version, Generation: c.build.Generation, Partitions: c.parts}, nil
		}
	}
	return w.resolveFresh(ctx, name)
}

// resolveFresh reads the active build from Redis and caches it.
func (w *Watcher) resolveFresh(ctx context.Context, name string) (*View, error) {
	start := time.Now()
	v, err := Resolve(ctx, w.rdb, name)
	if err != nil {
		return nil, err
	}
	if w.cfg.ActiveTTL > 0 {
		w.cacheMu.Lock()
		w.cache[name] = cachedView{build: v.Build(), parts: v.Partitions, expires: start.Add(w.cfg.ActiveTTL)}
		w.cacheMu.Unlock()
	}
	return v, nil
}

// WaitFor returns a View of the active build of projection name once that
// build's checkpoint has reached position, like the package-level WaitFor
// (a projection with no active build yet is waited for; a zero position
// never waits), but waits for the runner's commit notification instead of
// polling. While MaxWaiters waiters wait, a call that would wait gets
// ErrTooManyWaiters at once. It gives up with ctx's error, which also
// matches ErrNotReady if no build was active by then.
func (w *Watcher) WaitFor(ctx context.Context, name string, position eventstore.Position) (*View, error) {
	return w.WaitForKey(ctx, name, "", position)
}

// WaitForKey is WaitFor for the reads of the entries of one partition key
// (View.KeyFor): on a partitioned build it waits only for the partition
// holding key. With key "" it is WaitFor, which waits for every partition.
// The runners of every partition announce their commits on the projection's
// one CommitChannel; a notification wakes a re-check, which reads the
// checkpoints of the active build once for all its waiters.
func (w *Watcher) WaitForKey(ctx context.Context, name, key string, position eventstore.Position) (*View, error) {
	v, err := w.Resolve(ctx, name)
	if position.IsZero() || err != nil && !errors.Is(err, ErrNotReady) {
		return v, err
	}
	var cp eventstore.Position
	if err == nil {
		if cp, err = v.checkpointFor(ctx, key, nil); err != nil {
			return nil, err
		}
		if !cp.Before(position) {
			return v, nil
		}
	}
	wt := &waiter{key: key, position: position, wake: make(chan wakeup, 1)}
	if err := w.register(name, wt); err != nil {
		return nil, err
	}
	// A commit between the check above and the registration notified
	// nobody: look once more now that a notification would reach us.
	w.markDirty(name)
	select {
	case u := <-wt.wake:
		return u.view, u.err
	case <-ctx.Done():
		w.unregister(name, wt)
		// The wake-up may have raced the cancellation: prefer it.
		select {
		case u := <-wt.wake:
			if u.err == nil {
				return u.view, nil
			}
		default:
		}
		return nil, waitError(name, position, v, cp, ctx.Err())
	}
}

func (w *Watcher) register(name string, wt *waiter) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.closed:
		return fmt.Errorf("%w: projection %q", ErrWatcherClosed, name)
	case w.cfg.MaxWaiters > 0 && w.waiting >= w.cfg.MaxWaiters:
		return fmt.Errorf("%w: %d are waiting", ErrTooManyWaiters, w.waiting)
	}
	g := w.projs[name]
	if g == nil {
		g = &waitGroup{waiters: make(map[*waiter]struct{})}
		w.projs[name] = g
	}
	g.waiters[wt] = struct{}{}
	w.waiting++
	return nil
}

func (w *Watcher) unregister(name string, wt *waiter) {
	w.mu.Lock()
	defer w.mu.Unlock()
	g := w.projs[name]
	if g == nil {
		return
	}
	if _, ok := g.waiters[wt]; ok {
		delete(g.waiters, wt)
		w.waiting--
	}
	if len(g.waiters) == 0 {
		delete(w.projs, name)
	}
}

// markDirty asks the checker to re-check projection name.
func (w *Watcher) markDirty(name string) {
	w.mu.Lock()
	if g := w.projs[name]; g != nil {
		g.dirty = true
	}
	w.mu.Unlock()
	w.wakeChecker()
}

func (w *Watcher) wakeChecker() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// receive reads the subscription until ctx ends. go-redis reconnects and
// resubscribes after a failed read; every confirmation of the subscription
// (the first one and each after a reconnect) re-checks every waiter, since
// notifications sent meanwhile were lost.
func (w *Watcher) receive(ctx context.Context) {
	pause := 50 * time.Millisecond
	for {
		msg, err := w.ps.ReceiveTimeout(ctx, healthEvery)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				// Silent for healthEvery: a ping proves the connection, or
				// fails and makes go-redis reconnect.
				_ = w.ps.Ping(ctx)
				continue
			}
			w.log.Warn("commit notifications: subscription failed; waiters fall back to polling until it is back", "error", err)
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			pause = min(2*pause, w.cfg.FallbackPoll, 5*time.Second)
			continue
		}
		pause = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "psubscribe" {
				w.count(func(s *WatcherStats) { s.Subscriptions++ })
				w.markAllDirty()
			}
		case *redis.Message:
			w.count(func(s *WatcherStats) { s.Notifications++ })
			w.notified(m.Channel, m.Payload)
		}
	}
}

// notified handles a commit notification: "<build> <position>" on the
// channel of a projection. Waiters wait for the active build; a build that
// is not active yet (a rebuild catching up) or a position below every
// waiter's cannot satisfy anyone, but the build may have become active, so
// only the position filters.
func (w *Watcher) notified(channel, payload string) {
	name, ok := projectionOfChannel(channel)
	if !ok {
		return
	}
	_, ps, _ := strings.Cut(strings.TrimSuffix(payload, SwitchedSuffix), " ")
	pos, perr := eventstore.ParsePosition(ps)
	w.mu.Lock()
	g := w.projs[name]
	if g == nil {
		w.mu.Unlock()
		return
	}
	wake := perr != nil // an unreadable notification: check rather than guess
	for wt := range g.waiters {
		if wake || !pos.Before(wt.position) {
			wake = true
			break
		}
	}
	if wake {
		g.dirty = true
	}
	w.mu.Unlock()
	if wake {
		w.wakeChecker()
	}
}

func (w *Watcher) markAllDirty() {
	w.mu.Lock()
	for _, g := range w.projs {
		g.dirty = true
	}
	w.mu.Unlock()
	w.wakeChecker()
}

// check re-checks dirty projections when kicked, and every projection with
// waiters every FallbackPoll.
func (w *Watcher) check(ctx context.Context) {
	tick := time.NewTicker(w.cfg.FallbackPoll)
	defer tick.Stop()
	for {
		all := false
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-tick.C:
			all = true
		}
		w.mu.Lock()
		var names []string
		for name, g := range w.projs {
			if all || g.dirty {
				g.dirty = false
				names = append(names, name)
			}
		}
		w.checks++
		w.mu.Unlock()
		for _, name := range names {
			w.recheck(ctx, name)
		}
		w.mu.Lock()
		w.checks--
		w.mu.Unlock()
	}
}

// recheck reads the active build of name and its checkpoint once and wakes
// the waiters it satisfies. A Redis error wakes every waiter of name with
// it, as a failed poll would have.
func (w *Watcher) recheck(ctx context.Context, name string) {
	w.count(func(s *WatcherStats) { s.Checks++ })
	v, err := w.resolveFresh(ctx, name)
	var cps []eventstore.Position
	if err == nil {
		cps, err = v.Checkpoints(ctx)
	}
	if ctx.Err() != nil {
		return // closing: Close answers the waiters
	}
	if errors.Is(err, ErrNotReady) {
		return // no active build yet: everyone keeps waiting for one
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	g := w.projs[name]
	if g == nil {
		return
	}
	for wt := range g.waiters {
		var cp eventstore.Position
		if err == nil {
			cp, _ = v.checkpointFor(ctx, wt.key, cps) // from cps: no error, no I/O
		}
		switch {
		case err != nil:
			wt.wake <- wakeup{err: err}
		case !cp.Before(wt.position):
			wt.wake <- wakeup{view: &View{rdb: w.rdb, Name: name, Version: v.Version, Generation: v.Generation, Partitions: v.Partitions}}
		default:
			continue
		}
		delete(g.waiters, wt)
		w.waiting--
	}
	if len(g.waiters) == 0 {
		delete(w.projs, name)
	}
}

func (w *Watcher) count(f func(*WatcherStats)) {
	w.statsMu.Lock()
	f(&w.stats)
	w.statsMu.Unlock()
}

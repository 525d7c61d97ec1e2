package consume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/eventline/eventline/relay"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

var (
	// ErrInProgress means another delivery of the same event is being handled
	// right now by the same handler. Deduplicate returns it so the transport
	// redelivers the message later instead of running the handler twice at once.
	ErrInProgress = errors.New("consume: event is being handled by another delivery")
	// ErrNoEventID means a message has neither [relay.MetaEventID] nor a UUID, so it
	// cannot be de-duplicated.
	ErrNoEventID = errors.New("consume: message has no event id")
)

// DedupStore remembers which events a handler has finished, in two phases: a
// Claim marks an event as being handled (for a bounded time), Done marks it
// handled, Release drops an unfinished claim.
type DedupStore interface {
	// Claim starts handling key. It reports done when key was already handled,
	// an error matching ErrInProgress when another claim on key is live, and
	// otherwise a token that the caller passes to Done or Release.
	Claim(ctx context.Context, key string) (token string, done bool, err error)
	// Done marks key handled and drops the claim held with token.
	Done(ctx context.Context, key, token string) error
	// Release drops the claim held with token, so that a redelivery can handle
	// key again.
	Release(ctx context.Context, key, token string) error
}

// bookkeepingTimeout bounds Done and Release, which run on a context detached
// from the message's so that shutdown does not leave claims behind.
const bookkeepingTimeout = 5 * time.Second

// Deduplicator de-duplicates a watermill router's handlers by event id: each
// event is handled at most once to success per handler, counting as success
// only a handling whose effects are all out, including the messages the
// handler produced. The router publishes those after the handler returned, so
// a Deduplicator has two parts: Middleware claims the event and runs the
// handler, and DecoratePublisher marks the event done once the router
// published what the handler produced (or releases the claim when that
// publish failed, so the redelivery runs the handler again and produces the
// messages again). AddTo installs both; NewRouter does it for you.
//
// The key is the handler name the router puts in the message context, "/",
// and the [relay.MetaEventID] metadata (the message UUID when that is absent), so
// several handlers can share one store.
//
// The event is marked handled only after the handler succeeded and its
// produced messages were published: a handler that fails, panics (under
// Recoverer), whose output cannot be published, or whose process dies leaves
// no mark, so the message is redelivered and handled again rather than lost.
// While a delivery is being handled (and its output published), a concurrent
// delivery of the same event (a Redis Streams claim after a consumer stalled,
// say) gets ErrInProgress and is nacked, so the handler never runs twice at
// the same time for one event. What remains is the window between the
// handler's side effects and the mark: a crash there runs the handler again on
// redelivery, so side effects (e.g. a command with command.WithID keyed by the
// event id) must tolerate it, and the produced messages may be published
// twice: at least once, never lost.
//
// A redelivered, already handled message is acked and dropped: the handler is
// not called and no messages are produced.
type Deduplicator struct {
	store DedupStore
	// decorated is set once DecoratePublisher wrapped a publisher: only then
	// does anything mark done an event whose handler produced messages.
	decorated atomic.Bool
}

// NewDeduplicator returns a Deduplicator keeping its marks in store.
func NewDeduplicator(store DedupStore) *Deduplicator {
	return &Deduplicator{store: store}
}

// AddTo adds d's Middleware to r's handlers and d's DecoratePublisher to
// their publishers. Call it before r runs. With other middleware, mind the
// order: AddTo appends d.Middleware after the middleware r already has, so it
// runs inside them.
func (d *Deduplicator) AddTo(r *message.Router) {
	r.AddMiddleware(d.Middleware)
	r.AddPublisherDecorators(d.DecoratePublisher)
}

// ErrProducedMessages means a handler de-duplicated without a publisher
// decorator (Deduplicate, or a Deduplicator whose DecoratePublisher no router
// applied) produced messages. Such a middleware cannot know when the router
// has published them, so it refuses to mark the event done: the message is
// nacked. Use NewRouter, or Deduplicator.AddTo.
var ErrProducedMessages = errors.New("consume: a de-duplicated handler produced messages, but no dedup publisher decorator publishes them; use NewRouter or Deduplicator.AddTo")

// Deduplicate returns a de-duplicating middleware for consumer handlers,
// those that produce no messages (watermill's AddConsumerHandler): see
// Deduplicator for what it guarantees. It has no part in publishing, so a
// handler under it that produces messages fails with ErrProducedMessages
// rather than have its event marked done before the messages are out; such
// handlers need Deduplicator.AddTo (NewRouter uses it).
func Deduplicate(store DedupStore) message.HandlerMiddleware {
	return NewDeduplicator(store).Middleware
}

// Middleware is the handler half of d: see Deduplicator.
func (d *Deduplicator) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		id := msg.Metadata.Get(relay.MetaEventID)
		if id == "" {
			id = msg.UUID
		}
		if id == "" {
			return nil, ErrNoEventID
		}
		key := id
		if name := message.HandlerNameFromCtx(msg.Context()); name != "" {
			key = name + "/" + id
		}
		token, done, err := d.store.Claim(msg.Context(), key)
		if err != nil {
			return nil, fmt.Errorf("consume: dedup claim %q: %w", key, err)
		}
		if done {
			return nil, nil
		}
		claim := &dedupClaim{store: d.store, ctx: context.WithoutCancel(msg.Context()), key: key, token: token}
		out, err := h(msg)
		switch {
		case err != nil:
			// A failed release only delays a redelivery until the claim expires.
			_ = claim.settle(false)
			return out, err
		case len(out) == 0:
			// Not acking when the mark fails is the safe side: a redelivery
			// handles the event again rather than the mark being lost with
			// the event unhandled.
			return nil, claim.settle(true)
		case !d.decorated.Load():
			_ = claim.settle(false)
			return nil, fmt.Errorf("%w (event %s, handler %q)", ErrProducedMessages, id, message.HandlerNameFromCtx(msg.Context()))
		}
		// The event is done only once the router published out: the
		// decorated publisher settles the claim. Until then it stays claimed,
		// so a concurrent delivery is nacked; if the process dies first, the
		// claim expires and a redelivery handles the event again.
		for _, m := range out {
			m.SetContext(context.WithValue(m.Context(), dedupClaimKey{}, claim))
		}
		return out, nil
	}
}

// DecoratePublisher is the publisher half of d, a message.PublisherDecorator:
// the returned publisher marks done the events whose produced messages it
// published, and releases their claims when the publish failed.
func (d *Deduplicator) DecoratePublisher(pub message.Publisher) (message.Publisher, error) {
	if pub == nil {
		return nil, errors.New("consume: dedup publisher decorator: nil publisher")
	}
	d.decorated.Store(true)
	return dedupPublisher{pub}, nil
}

// dedupClaimKey is the context key under which a produced message carries the
// claim of the event whose handler produced it.
type dedupClaimKey struct{}

// dedupClaim is one held claim, settled once: marked done or released.
type dedupClaim struct {
	store      DedupStore
	ctx        context.Context // the message's, detached from its cancellation
	key, token string
	once       sync.Once
	err        error
}

// settle marks the claim's event done when handled is true, and otherwise
// releases the claim so that a redelivery may handle the event. Only the first
// call acts; later calls return its result.
func (c *dedupClaim) settle(handled bool) error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(c.ctx, bookkeepingTimeout)
		defer cancel()
		if !handled {
			c.err = c.store.Release(ctx, c.key, c.token)
			return
		}
		if err := c.store.Done(ctx, c.key, c.token); err != nil {
			_ = c.store.Release(ctx, c.key, c.token)
			c.err = fmt.Errorf("consume: dedup mark %q done: %w", c.key, err)
		}
	})
	return c.err
}

// dedupPublisher settles the claims of the events whose produced messages it
// publishes.
type dedupPublisher struct{ message.Publisher }

// Publish publishes msgs, then marks their events done, or releases their
// claims when the publish failed. A mark that fails makes Publish fail too,
// so the router nacks the message and its redelivery handles it again.
func (p dedupPublisher) Publish(topic string, msgs ...*message.Message) error {
	err := p.Publisher.Publish(topic, msgs...)
	var claims []*dedupClaim
	for _, m := range msgs {
		if c, ok := m.Context().Value(dedupClaimKey{}).(*dedupClaim); ok && !slices.Contains(claims, c) {
			claims = append(claims, c)
		}
	}
	errs := []error{err}
	for _, c := range claims {
		if serr := c.settle(err == nil); err == nil {
			errs = append(errs, serr)
		}
	}
	return errors.Join(errs...)
}

// Defaults for RedisDedupConfig and MemoryDedupConfig.
const (
	// DefaultDoneTTL is how long a handled event is remembered. Redeliveries
	// later than that are handled again.
	DefaultDoneTTL = 7 * 24 * time.Hour
	// DefaultClaimTTL is how long a claim lives if its holder dies. It must be
	// longer than the handler takes, retries included.
	DefaultClaimTTL = 5 * time.Minute
	// DefaultDedupPrefix prefixes RedisDedup's keys.
	DefaultDedupPrefix = "el:dedup:"
)

// RedisDedupConfig configures a RedisDedup.
type RedisDedupConfig struct {
	// Redis holds the marks. Required. The store does not own the client.
	Redis redis.UniversalClient
	// Prefix starts every key. Default DefaultDedupPrefix.
	Prefix string
	// DoneTTL is how long a handled event is remembered. Default
	// DefaultDoneTTL.
	DoneTTL time.Duration
	// ClaimTTL is how long a claim lives if its holder dies. Default
	// DefaultClaimTTL.
	ClaimTTL time.Duration
}

// Validate reports a RedisDedupConfig that NewRedisDedup would refuse. The
// error matches ErrInvalidConfig.
func (c RedisDedupConfig) Validate() error {
	switch {
	case c.Redis == nil:
		return fmt.Errorf("%w: RedisDedupConfig.Redis is nil", ErrInvalidConfig)
	case c.DoneTTL < 0 || c.ClaimTTL < 0:
		return fmt.Errorf("%w: RedisDedupConfig.DoneTTL %v and ClaimTTL %v must be >= 0", ErrInvalidConfig, c.DoneTTL, c.ClaimTTL)
	}
	return nil
}

// RedisDedup is a DedupStore in Redis. Per key it keeps "<prefix>{<key>}:claim"
// (the claim's token, with a PX TTL) and "<prefix>{<key>}:done" (with a PX
// TTL); the hash tag keeps both in one Redis Cluster slot so that each step is
// one atomic script. It does not own the client.
type RedisDedup struct {
	client            redis.UniversalClient
	prefix            string
	doneTTL, claimTTL time.Duration
}

// NewRedisDedup returns the Redis store cfg describes.
func NewRedisDedup(cfg RedisDedupConfig) (*RedisDedup, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultDedupPrefix
	}
	if cfg.DoneTTL == 0 {
		cfg.DoneTTL = DefaultDoneTTL
	}
	if cfg.ClaimTTL == 0 {
		cfg.ClaimTTL = DefaultClaimTTL
	}
	return &RedisDedup{client: cfg.Redis, prefix: cfg.Prefix, doneTTL: cfg.DoneTTL, claimTTL: cfg.ClaimTTL}, nil
}

var (
	claimScript = redis.NewScript(`if redis.call("EXISTS", KEYS[1]) == 1 then return 1 end
if redis.call("SET", KEYS[2], ARGV[1], "NX", "PX", ARGV[2]) then return 0 end
return 2`)
	doneScript = redis.NewScript(`redis.call("SET", KEYS[1], "1", "PX", ARGV[2])
if redis.call("GET", KEYS[2]) == ARGV[1] then redis.call("DEL", KEYS[2]) end
return 1`)
	dropClaimScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0`)
)

func (d *RedisDedup) keys(key string) (done, claim string) {
	base := d.prefix + "{" + key + "}:"
	return base + "done", base + "claim"
}

// Claim implements DedupStore.
func (d *RedisDedup) Claim(ctx context.Context, key string) (string, bool, error) {
	done, claim := d.keys(key)
	token := uuid.NewString()
	n, err := claimScript.Run(ctx, d.client, []string{done, claim}, token, d.claimTTL.Milliseconds()).Int()
	switch {
	case err != nil:
		return "", false, err
	case n == 1:
		return "", true, nil
	case n == 2:
		return "", false, ErrInProgress
	}
	return token, false, nil
}

// Done implements DedupStore.
func (d *RedisDedup) Done(ctx context.Context, key, token string) error {
	done, claim := d.keys(key)
	return doneScript.Run(ctx, d.client, []string{done, claim}, token, d.doneTTL.Milliseconds()).Err()
}

// Release implements DedupStore.
func (d *RedisDedup) Release(ctx context.Context, key, token string) error {
	_, claim := d.keys(key)
	return dropClaimScript.Run(ctx, d.client, []string{claim}, token).Err()
}

// MemoryDedup is a DedupStore in process memory, for tests and for the
// all-in-one process where the transport (GoChannel) lives in the same memory.
// Expired entries are dropped as new ones are claimed; it starts no goroutine.
type MemoryDedup struct {
	mu                sync.Mutex
	doneTTL, claimTTL time.Duration
	entries           map[string]dedupEntry
	sweepAt           int
}

type dedupEntry struct {
	token   string // "" once done
	expires time.Time
}

// MemoryDedupConfig configures a MemoryDedup. The zero value takes the
// defaults.
type MemoryDedupConfig struct {
	// DoneTTL is how long a handled event is remembered. Default
	// DefaultDoneTTL.
	DoneTTL time.Duration
	// ClaimTTL is how long a claim lives if its holder dies. Default
	// DefaultClaimTTL.
	ClaimTTL time.Duration
}

// Validate reports a MemoryDedupConfig that NewMemoryDedup would refuse. The
// error matches ErrInvalidConfig.
func (c MemoryDedupConfig) Validate() error {
	if c.DoneTTL < 0 || c.ClaimTTL < 0 {
		return fmt.Errorf("%w: MemoryDedupConfig.DoneTTL %v and ClaimTTL %v must be >= 0", ErrInvalidConfig, c.DoneTTL, c.ClaimTTL)
	}
	return nil
}

// NewMemoryDedup returns the in-memory store cfg describes.
func NewMemoryDedup(cfg MemoryDedupConfig) (*MemoryDedup, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.DoneTTL == 0 {
		cfg.DoneTTL = DefaultDoneTTL
	}
	if cfg.ClaimTTL == 0 {
		cfg.ClaimTTL = DefaultClaimTTL
	}
	return &MemoryDedup{doneTTL: cfg.DoneTTL, claimTTL: cfg.ClaimTTL, entries: map[string]dedupEntry{}, sweepAt: 1024}, nil
}

// Claim implements DedupStore.
func (d *MemoryDedup) Claim(_ context.Context, key string) (string, bool, error) {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.entries) >= d.sweepAt {
		for k, e := range d.entries {
			if now.After(e.expires) {
				delete(d.entries, k)
			}
		}
		d.sweepAt = max(1024, 2*len(d.entries))
	}
	if e, ok := d.entries[key]; ok && now.Before(e.expires) {
		if e.token == "" {
			return "", true, nil
		}
		return "", false, ErrInProgress
	}
	token := uuid.NewString()
	d.entries[key] = dedupEntry{token: token, expires: now.Add(d.claimTTL)}
	return token, false, nil
}

// Done implements DedupStore.
func (d *MemoryDedup) Done(_ context.Context, key, _ string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.entries[key] = dedupEntry{expires: time.Now().Add(d.doneTTL)}
	return nil
}

// Release implements DedupStore.
func (d *MemoryDedup) Release(_ context.Context, key, token string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.entries[key]; ok && e.token == token && token != "" {
		delete(d.entries, key)
	}
	return nil
}

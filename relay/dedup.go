package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

var (
	// ErrInProgress means another delivery of the same event is being handled
	// right now by the same handler. Deduplicate returns it so the transport
	// redelivers the message later instead of running the handler twice at once.
	ErrInProgress = errors.New("relay: event is being handled by another delivery")
	// ErrNoEventID means a message has neither MetaEventID nor a UUID, so it
	// cannot be de-duplicated.
	ErrNoEventID = errors.New("relay: message has no event id")
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

// Deduplicate returns a watermill middleware that runs the handler at most once
// to success per event id and handler. The key is the handler name the router
// puts in the message context, "/", and the MetaEventID metadata (the message
// UUID when that is absent), so several handlers can share one store.
//
// The event is marked handled only after the handler succeeded: a handler that
// fails, panics (under Recoverer) or whose process dies leaves no mark, so the
// message is redelivered and handled again rather than lost. While a delivery
// is being handled, a concurrent delivery of the same event (a Redis Streams
// claim after a consumer stalled, say) gets ErrInProgress and is nacked, so the
// handler never runs twice at the same time for one event. What remains is the
// window between the handler's side effects and Done: a crash there runs the
// handler again on redelivery, so side effects outside the handler's own
// idempotent writes (e.g. a command with command.WithID keyed by the event id)
// must tolerate it.
//
// A redelivered, already handled message is acked and dropped: the handler is
// not called and no messages are produced.
func Deduplicate(store DedupStore) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			id := msg.Metadata.Get(MetaEventID)
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
			token, done, err := store.Claim(msg.Context(), key)
			if err != nil {
				return nil, fmt.Errorf("relay: dedup claim %q: %w", key, err)
			}
			if done {
				return nil, nil
			}
			ctx, cancel := context.WithTimeout(context.WithoutCancel(msg.Context()), bookkeepingTimeout)
			defer cancel()
			out, err := h(msg)
			if err != nil {
				// A failed release only delays a redelivery until the claim expires.
				_ = store.Release(ctx, key, token)
				return out, err
			}
			if err := store.Done(ctx, key, token); err != nil {
				// Not acking is the safe side: a redelivery handles it again
				// rather than the mark being lost with the event unhandled.
				_ = store.Release(ctx, key, token)
				return nil, fmt.Errorf("relay: dedup mark %q done: %w", key, err)
			}
			return out, nil
		}
	}
}

// Defaults for RedisDedup and MemoryDedup.
const (
	// DefaultDedupTTL is how long a handled event is remembered. Redeliveries
	// later than that are handled again.
	DefaultDedupTTL = 7 * 24 * time.Hour
	// DefaultClaimTTL is how long a claim lives if its holder dies. It must be
	// longer than the handler takes, retries included.
	DefaultClaimTTL = 5 * time.Minute
	// DefaultDedupPrefix prefixes RedisDedup's keys.
	DefaultDedupPrefix = "el:dedup:"
)

// RedisDedup is a DedupStore in Redis. Per key it keeps "<prefix>{<key>}:claim"
// (the claim's token, with a PX TTL) and "<prefix>{<key>}:done" (with an EX
// TTL); the hash tag keeps both in one Redis Cluster slot so that each step is
// one atomic script. It does not own the client.
type RedisDedup struct {
	client            redis.UniversalClient
	prefix            string
	doneTTL, claimTTL time.Duration
}

// NewRedisDedup returns a Redis store with keys under prefix (DefaultDedupPrefix
// when empty), remembering handled events for doneTTL (DefaultDedupTTL when <=
// 0) and claims for claimTTL (DefaultClaimTTL when <= 0).
func NewRedisDedup(client redis.UniversalClient, prefix string, doneTTL, claimTTL time.Duration) *RedisDedup {
	if prefix == "" {
		prefix = DefaultDedupPrefix
	}
	if doneTTL <= 0 {
		doneTTL = DefaultDedupTTL
	}
	if claimTTL <= 0 {
		claimTTL = DefaultClaimTTL
	}
	return &RedisDedup{client: client, prefix: prefix, doneTTL: doneTTL, claimTTL: claimTTL}
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

// NewMemoryDedup returns an in-memory store remembering handled events for
// doneTTL (DefaultDedupTTL when <= 0) and claims for claimTTL (DefaultClaimTTL
// when <= 0).
func NewMemoryDedup(doneTTL, claimTTL time.Duration) *MemoryDedup {
	if doneTTL <= 0 {
		doneTTL = DefaultDedupTTL
	}
	if claimTTL <= 0 {
		claimTTL = DefaultClaimTTL
	}
	return &MemoryDedup{doneTTL: doneTTL, claimTTL: claimTTL, entries: map[string]dedupEntry{}, sweepAt: 1024}
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

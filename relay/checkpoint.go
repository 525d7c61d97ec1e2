package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/lease"
	"github.com/redis/go-redis/v9"
)

// Checkpoint stores the position of the last record a relay has published (or
// deliberately skipped). A relay saves it only after everything up to it was
// published, so it never runs ahead of the transport.
type Checkpoint interface {
	// Load returns the saved position, or eventstore.Start when none was saved.
	Load(ctx context.Context) (eventstore.Position, error)
	// Save replaces the saved position.
	Save(ctx context.Context, pos eventstore.Position) error
}

// MemoryCheckpoint is a Checkpoint held in memory, for tests, examples and an
// all-in-one process whose transport (GoChannel) forgets everything on restart
// anyway. The zero value is ready to use and starts at eventstore.Start.
type MemoryCheckpoint struct {
	mu  sync.Mutex
	pos eventstore.Position
}

// Load implements Checkpoint.
func (c *MemoryCheckpoint) Load(context.Context) (eventstore.Position, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pos, nil
}

// Save implements Checkpoint.
func (c *MemoryCheckpoint) Save(_ context.Context, pos eventstore.Position) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pos = pos
	return nil
}

// RedisCheckpoint is a Checkpoint kept in one Redis string key as the position's
// token. It does not own the client.
//
// Saved with a context from RedisLease.Acquire (as the relay does), a save
// writes only if the lease is still this holding's, checked by Redis in the
// same script as the write; otherwise it writes nothing and fails with
// ErrLeaseLost. The lease key must then be on the same Redis as the
// checkpoint, and on Redis Cluster in the same hash slot: give both keys one
// hash tag, e.g. "{el:relay:orders}:checkpoint" and "{el:relay:orders}:lease".
type RedisCheckpoint struct {
	client redis.UniversalClient
	key    string
}

// NewRedisCheckpoint returns a checkpoint stored under key, e.g.
// "el:relay:orders:checkpoint".
func NewRedisCheckpoint(client redis.UniversalClient, key string) *RedisCheckpoint {
	return &RedisCheckpoint{client: client, key: key}
}

// Load implements Checkpoint.
func (c *RedisCheckpoint) Load(ctx context.Context) (eventstore.Position, error) {
	s, err := c.client.Get(ctx, c.key).Result()
	if errors.Is(err, redis.Nil) {
		return eventstore.Start, nil
	}
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("relay: load checkpoint %q: %w", c.key, err)
	}
	pos, err := eventstore.ParsePosition(s)
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("relay: checkpoint %q: %w", c.key, err)
	}
	return pos, nil
}

// fencedSaveScript: KEYS[1] checkpoint, KEYS[2] lease; ARGV position,
// owner, token. 1 saved, 0 the lease is not that holding's.
var fencedSaveScript = redis.NewScript(lease.FenceLua + `
if not lease_held(KEYS[2], ARGV[2], ARGV[3]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1`)

// Save implements Checkpoint. Under a RedisLease's holding (see
// RedisCheckpoint) it fails with ErrLeaseLost when that holding is over.
func (c *RedisCheckpoint) Save(ctx context.Context, pos eventstore.Position) error {
	held := heldFrom(ctx)
	if held == nil {
		if err := c.client.Set(ctx, c.key, pos.String(), 0).Err(); err != nil {
			return fmt.Errorf("relay: save checkpoint %q at %s: %w", c.key, pos, err)
		}
		return nil
	}
	// Past Until the holder cannot prove it holds the lease: no round trip.
	if !held.Valid(time.Now()) {
		return fmt.Errorf("%w: checkpoint %q not saved at %s: the holding of token %d ended", ErrLeaseLost, c.key, pos, held.Token())
	}
	f := held.Fence()
	n, err := fencedSaveScript.Run(ctx, c.client, []string{c.key, f.Key}, pos.String(), f.Owner, f.TokenArg()).Int()
	if err != nil {
		return fmt.Errorf("relay: save checkpoint %q at %s: %w", c.key, pos, err)
	}
	if n != 1 {
		return fmt.Errorf("%w: checkpoint %q not saved at %s: lease %q is no longer held by %q with token %d",
			ErrLeaseLost, c.key, pos, f.Key, f.Owner, f.Token)
	}
	return nil
}

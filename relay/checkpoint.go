package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/eventline/eventline/eventstore"
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

// Save implements Checkpoint.
func (c *RedisCheckpoint) Save(ctx context.Context, pos eventstore.Position) error {
	if err := c.client.Set(ctx, c.key, pos.String(), 0).Err(); err != nil {
		return fmt.Errorf("relay: save checkpoint %q at %s: %w", c.key, pos, err)
	}
	return nil
}

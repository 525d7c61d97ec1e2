package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/eventline/eventline/internal/lease"
	"github.com/redis/go-redis/v9"
)

// ErrLeaseLost is returned by a Checkpoint's Save that refused to write
// because the lease it was saved under is no longer held (RedisCheckpoint
// under a RedisLease). The relay then stops publishing and acquires the
// lease again, loading the checkpoint anew, instead of retrying the save.
var ErrLeaseLost = errors.New("relay: lease lost")

// Lease lets one relay instance of several publish at a time.
type Lease interface {
	// Acquire blocks until the lease is held or ctx ends. The returned context
	// ends when the lease is lost or released; release gives the lease up and
	// waits for any background renewal to stop.
	Acquire(ctx context.Context) (held context.Context, release func(), err error)
}

// DefaultLeaseTTL is the lease TTL of a RedisLeaseConfig whose TTL is 0.
const DefaultLeaseTTL = 10 * time.Second

// RedisLeaseConfig configures a RedisLease.
type RedisLeaseConfig struct {
	// Redis holds the lease. Required. The lease does not own the client.
	Redis redis.UniversalClient
	// Key is the lease's key, e.g. "el:relay:orders:lease". Required.
	Key string
	// TTL is how long the lease lives after its last renewal; the holder
	// renews it every third of it. Default DefaultLeaseTTL; at least 30 ms.
	TTL time.Duration
	// Owner names this instance in the lease. Default: random.
	Owner string
}

// Validate reports a RedisLeaseConfig that NewRedisLease would refuse. The
// error matches ErrInvalidConfig.
func (c RedisLeaseConfig) Validate() error {
	switch {
	case c.Redis == nil:
		return fmt.Errorf("%w: RedisLeaseConfig.Redis is nil", ErrInvalidConfig)
	case c.Key == "":
		return fmt.Errorf("%w: RedisLeaseConfig.Key is empty", ErrInvalidConfig)
	case c.TTL < 0 || (c.TTL > 0 && c.TTL < lease.MinTTL):
		return fmt.Errorf("%w: RedisLeaseConfig.TTL %v: want 0 (default) or at least %v", ErrInvalidConfig, c.TTL, lease.MinTTL)
	}
	return nil
}

// RedisLease is a Lease on one Redis key, shared with the projection runner's
// lease: an acquisition takes it when it is free or expired (by the Redis
// server's clock), the holder renews it every TTL/3, and a release frees it
// only if this instance still holds it.
//
// The holder stops publishing (the context Acquire returns ends) as soon as
// it cannot prove it still holds the lease: when a renewal finds the lease
// taken, or when Redis has not answered for long enough that the lease may
// have expired, counted from before the last successful renewal was sent.
// The lease is advisory for the transport: a holder that stalls for longer
// than the TTL (a long GC pause) may publish a batch after another instance
// took over. That produces duplicates, never loss, because each instance only
// advances the shared checkpoint after it published.
//
// The checkpoint itself is fenced: a RedisCheckpoint saved with the context
// Acquire returns writes only if Redis still holds this holding's lease
// (owner and fencing token), checked in the same Lua script as the write.
// So a holder that lost the lease without noticing yet (Redis restarted
// empty, or another instance took over during a pause) cannot write its old
// position over the new holder's, or into an emptied Redis whose transport
// never got what that position claims.
type RedisLease struct {
	l *lease.Lease
}

// NewRedisLease returns the lease cfg describes. It does not connect to
// anything.
func NewRedisLease(cfg RedisLeaseConfig) (*RedisLease, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultLeaseTTL
	}
	l, err := lease.New(lease.Config{Redis: cfg.Redis, Key: cfg.Key, Owner: cfg.Owner, TTL: cfg.TTL})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return &RedisLease{l: l}, nil
}

// Acquire implements Lease. It tries every TTL/3 while another instance holds
// the lease, and keeps trying through Redis errors.
func (l *RedisLease) Acquire(ctx context.Context) (context.Context, func(), error) {
	h, err := l.l.Acquire(ctx, 0)
	if err != nil {
		return nil, nil, err
	}
	held, stop := h.Keep(ctx)
	held = context.WithValue(held, heldKey{}, h)
	release := func() {
		stop()
		// Best effort, bounded: if it fails the lease expires after the TTL.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = h.Release(rctx)
	}
	return held, release, nil
}

// heldKey is the context key of the *lease.Held a RedisLease's Acquire puts
// in the context it returns, for RedisCheckpoint.Save to fence its write.
type heldKey struct{}

// heldFrom returns the holding ctx was acquired under, or nil.
func heldFrom(ctx context.Context) *lease.Held {
	h, _ := ctx.Value(heldKey{}).(*lease.Held)
	return h
}

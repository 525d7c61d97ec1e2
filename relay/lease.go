package relay

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Lease lets one relay instance of several publish at a time.
type Lease interface {
	// Acquire blocks until the lease is held or ctx ends. The returned context
	// ends when the lease is lost or released; release gives the lease up and
	// waits for any background renewal to stop.
	Acquire(ctx context.Context) (held context.Context, release func(), err error)
}

// RedisLease is a Lease on one Redis key: SET NX PX to take it, a renewal every
// TTL/3 that extends it only while it still holds the lease's random token,
// and a token-checked delete to release it.
//
// The lease is advisory: a holder that stalls for longer than TTL (a long GC
// pause, a partition) may publish a batch after another instance took over.
// That produces duplicates, never loss, because each instance only advances the
// shared checkpoint after it published.
type RedisLease struct {
	client redis.UniversalClient
	key    string
	ttl    time.Duration
}

// DefaultLeaseTTL is the lease TTL NewRedisLease uses for a ttl <= 0.
const DefaultLeaseTTL = 10 * time.Second

// NewRedisLease returns a lease on key that expires ttl after its last renewal.
// It does not own the client.
func NewRedisLease(client redis.UniversalClient, key string, ttl time.Duration) *RedisLease {
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	return &RedisLease{client: client, key: key, ttl: ttl}
}

var (
	renewScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end
return 0`)
	releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1]) end
return 0`)
)

// Acquire implements Lease. It tries every TTL/3 while another instance holds
// the lease, and keeps trying through Redis errors.
func (l *RedisLease) Acquire(ctx context.Context) (context.Context, func(), error) {
	token := uuid.NewString()
	every := l.ttl / 3
	var sent time.Time
	for {
		sent = time.Now()
		ok, err := l.client.SetNX(ctx, l.key, token, l.ttl).Result()
		if err == nil && ok {
			break
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, ctx.Err()
		case <-t.C:
		}
	}
	held, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		t := time.NewTicker(every)
		defer t.Stop()
		// expires is the earliest moment the key can expire: the TTL counted
		// from before the command that set it was sent, never from its reply.
		expires := sent.Add(l.ttl)
		for {
			select {
			case <-held.Done():
				return
			case <-t.C:
			}
			sent := time.Now()
			n, err := renewScript.Run(held, l.client, []string{l.key}, token, l.ttl.Milliseconds()).Int()
			switch {
			case err == nil && n == 1:
				expires = sent.Add(l.ttl)
			case err == nil:
				return // someone else holds it now
			case !time.Now().Add(every).Before(expires):
				// Redis cannot be reached and the key may expire before the
				// next try: give the lease up now rather than publish on after
				// another instance may have taken it.
				return
			}
		}
	}()
	release := func() {
		cancel()
		wg.Wait()
		// Best effort, bounded: if it fails the key expires after the TTL.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer rcancel()
		_ = releaseScript.Run(rctx, l.client, []string{l.key}, token).Err()
	}
	return held, release, nil
}

// Package lease is the one Redis lease of eventline: the relay and the
// projection runner use it to let one process of several do a job at a time.
//
// A lease lives in one Redis hash, so it works on Redis Cluster (every
// operation touches one key) and inside the caller's own hash tag. The hash
// has no TTL; its fields are
//
//	owner    the holder's identity ("" or absent: nobody)
//	token    the fencing token, incremented by every acquisition, never reset
//	expires  when the holding ends, in milliseconds of the Redis server's clock
//
// Acquiring, renewing and releasing are Lua scripts that read the server's
// clock (TIME), so the lease expires on time on any server, miniredis
// included. Keeping the counter in the key that never expires is what makes
// the token monotonic: a holder that comes back after a pause presents an
// older token than whoever took over, and a store that checks the token
// refuses its writes.
//
// A holder also tracks, on its own clock, until when it surely holds the
// lease (Held.Until): the moment it sent the last successful acquisition or
// renewal plus the TTL. The server can only have set a later expiry, so a
// holder that stops by that moment when it cannot renew (Redis unreachable)
// never acts after another process could have taken over.
//
// Writes that must not land after a takeover are fenced on the server side:
// in a MULTI/EXEC, WATCH the lease key and run Fence.Check inside the WATCH
// callback (or Fence.Queue, to share its round trip with other reads); in a
// Lua script, prepend FenceLua and call lease_held.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Hash fields of a lease key.
const (
	FieldOwner   = "owner"
	FieldToken   = "token"
	FieldExpires = "expires"
)

var (
	// ErrInvalidConfig means a Config failed Validate.
	ErrInvalidConfig = errors.New("lease: invalid config")
	// ErrHeld means another owner holds the lease.
	ErrHeld = errors.New("lease: held by another owner")
	// ErrLost means the holder no longer holds the lease: it expired, was
	// released, or another owner took it.
	ErrLost = errors.New("lease: lost")
)

// MinTTL is the shortest TTL Validate accepts: below it, clock resolution and
// round trips leave a holder no time to work.
const MinTTL = 30 * time.Millisecond

// Config describes a lease.
type Config struct {
	// Redis holds the lease key. Required.
	Redis redis.Scripter
	// Key is the lease's hash key. Required.
	Key string
	// Owner names the holder; it must be unique among the processes sharing
	// the lease. Default: a random 12-byte hex string.
	Owner string
	// TTL is how long a holding lasts after an acquisition or renewal; at
	// least MinTTL. Required.
	TTL time.Duration
}

// Validate reports a Config that New would refuse. Errors match
// ErrInvalidConfig.
func (c Config) Validate() error {
	switch {
	case c.Redis == nil:
		return fmt.Errorf("%w: Redis is nil", ErrInvalidConfig)
	case c.Key == "":
		return fmt.Errorf("%w: Key is empty", ErrInvalidConfig)
	case c.TTL < MinTTL:
		return fmt.Errorf("%w: TTL %v is below %v", ErrInvalidConfig, c.TTL, MinTTL)
	}
	return nil
}

// Lease is one lease key as seen by one owner. It is safe for concurrent use.
type Lease struct {
	cfg Config
}

// New returns the lease cfg describes. It does not connect to anything.
func New(cfg Config) (*Lease, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Owner == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		cfg.Owner = hex.EncodeToString(b[:])
	}
	return &Lease{cfg: cfg}, nil
}

// Key returns the lease key.
func (l *Lease) Key() string { return l.cfg.Key }

// Owner returns the owner this Lease acquires as.
func (l *Lease) Owner() string { return l.cfg.Owner }

// TTL returns the lease's TTL.
func (l *Lease) TTL() time.Duration { return l.cfg.TTL }

// luaNow is the server's clock in milliseconds; scripts replicate by
// effects (Redis 5+ with replicate_commands, the default from Redis 7), so
// reading TIME before writing is allowed.
const luaNow = `
local function lease_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

// FenceLua defines lease_held(key, owner, token) for Lua scripts that write
// under a lease: it returns true when owner holds the lease at key with
// fencing token token (a decimal string) and the holding has not expired.
// Prepend it to the script's source and pass the lease key in KEYS (and the
// owner and Fence.TokenArg in ARGV).
const FenceLua = luaNow + `
local function lease_held(key, owner, token)
  local v = redis.call('HMGET', key, 'owner', 'token', 'expires')
  return v[1] == owner and v[2] == token and (tonumber(v[3]) or 0) > lease_now()
end
`

var (
	// acquireScript: KEYS[1] lease; ARGV owner, ttl ms. Returns the new
	// token, or {owner} of the current holder.
	acquireScript = redis.NewScript(luaNow + `
local v = redis.call('HMGET', KEYS[1], 'owner', 'token', 'expires')
local now = lease_now()
if v[1] and v[1] ~= '' and v[1] ~= ARGV[1] and (tonumber(v[3]) or 0) > now then
  return {v[1]}
end
local token = (tonumber(v[2]) or 0) + 1
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', string.format('%d', token),
  'expires', string.format('%d', now + tonumber(ARGV[2])))
return token`)
	// renewScript: KEYS[1] lease; ARGV owner, token, ttl ms. 1 renewed, 0 lost.
	renewScript = redis.NewScript(FenceLua + `
if not lease_held(KEYS[1], ARGV[1], ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'expires', string.format('%d', lease_now() + tonumber(ARGV[3])))
return 1`)
	// releaseScript: KEYS[1] lease; ARGV owner, token. 1 released, 0 not
	// the holder. The token stays, so that the next one is greater.
	releaseScript = redis.NewScript(FenceLua + `
if not lease_held(KEYS[1], ARGV[1], ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[1], 'owner', 'expires')
return 1`)
	// readScript: KEYS[1] lease. {owner, token, ms left} or {} when free.
	readScript = redis.NewScript(luaNow + `
local v = redis.call('HMGET', KEYS[1], 'owner', 'token', 'expires')
local left = (tonumber(v[3]) or 0) - lease_now()
if not v[1] or v[1] == '' or left <= 0 then return {} end
return {v[1], v[2], left}`)
)

// TryAcquire makes one attempt to take the lease. It fails with an error
// matching ErrHeld when another owner holds it. Acquiring a lease this owner
// already holds starts a new holding with a new token: fenced writes of the
// old one are refused from then on.
func (l *Lease) TryAcquire(ctx context.Context) (*Held, error) {
	sent := time.Now()
	res, err := acquireScript.Run(ctx, l.cfg.Redis, []string{l.cfg.Key}, l.cfg.Owner, l.cfg.TTL.Milliseconds()).Result()
	if err != nil {
		return nil, fmt.Errorf("lease %s: acquire: %w", l.cfg.Key, err)
	}
	switch v := res.(type) {
	case int64:
		return &Held{lease: l, token: uint64(v), until: sent.Add(l.cfg.TTL)}, nil
	case []any:
		holder := ""
		if len(v) > 0 {
			holder, _ = v[0].(string)
		}
		return nil, fmt.Errorf("%w: %s is held by %q", ErrHeld, l.cfg.Key, holder)
	}
	return nil, fmt.Errorf("lease %s: acquire: unexpected reply %v", l.cfg.Key, res)
}

// Acquire tries to take the lease every retry (TTL/3 when retry <= 0),
// through Redis errors, until it holds it or ctx ends.
func (l *Lease) Acquire(ctx context.Context, retry time.Duration) (*Held, error) {
	if retry <= 0 {
		retry = l.cfg.TTL / 3
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		h, err := l.TryAcquire(ctx)
		if err == nil {
			return h, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		t.Reset(retry)
	}
}

// State is what Read finds in a lease key.
type State struct {
	// Owner holds the lease; "" when nobody does.
	Owner string
	// Token is the holder's fencing token (0 when nobody holds it).
	Token uint64
	// Left is how long the holding lasts without renewal, by the server's
	// clock.
	Left time.Duration
}

// Read returns who holds the lease at key, as an observer (a status page)
// sees it; it changes nothing.
func Read(ctx context.Context, rdb redis.Scripter, key string) (State, error) {
	res, err := readScript.Run(ctx, rdb, []string{key}).Slice()
	if err != nil {
		return State{}, fmt.Errorf("lease %s: read: %w", key, err)
	}
	if len(res) != 3 {
		return State{}, nil
	}
	owner, _ := res[0].(string)
	tok, _ := res[1].(string)
	left, _ := res[2].(int64)
	n, _ := strconv.ParseUint(tok, 10, 64)
	return State{Owner: owner, Token: n, Left: time.Duration(left) * time.Millisecond}, nil
}

// Held is one holding of a lease: from an acquisition to its release or
// loss. It is safe for concurrent use.
type Held struct {
	lease *Lease
	token uint64

	mu    sync.Mutex
	until time.Time
	lost  bool
}

// Token returns the holding's fencing token. Tokens of a lease key only
// grow: a later holding always has a greater one.
func (h *Held) Token() uint64 { return h.token }

// Until returns the moment, on the local clock, until which the holder
// surely holds the lease: the start of its last successful acquisition or
// renewal plus the TTL. After it, another owner may hold the lease.
func (h *Held) Until() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost {
		return time.Time{}
	}
	return h.until
}

// Valid reports whether the holder surely holds the lease at now.
func (h *Held) Valid(now time.Time) bool { return now.Before(h.Until()) }

// Fence returns what a fenced write checks.
func (h *Held) Fence() Fence {
	return Fence{Key: h.lease.cfg.Key, Owner: h.lease.cfg.Owner, Token: h.token}
}

// Renew extends the holding by the TTL. It fails with an error matching
// ErrLost when the lease is no longer this holding's (expired, released or
// taken over); the holding is then over for good. Any other error (Redis
// unreachable) leaves Until unchanged: the holder may go on until then.
func (h *Held) Renew(ctx context.Context) error {
	l := h.lease
	if !h.Valid(time.Now()) {
		h.markLost()
		return fmt.Errorf("%w: %s: holding of token %d expired at %v", ErrLost, l.cfg.Key, h.token, h.until)
	}
	sent := time.Now()
	n, err := renewScript.Run(ctx, l.cfg.Redis, []string{l.cfg.Key}, l.cfg.Owner, h.tokenArg(), l.cfg.TTL.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("lease %s: renew: %w", l.cfg.Key, err)
	}
	if n != 1 {
		h.markLost()
		return fmt.Errorf("%w: %s: token %d no longer holds it", ErrLost, l.cfg.Key, h.token)
	}
	h.mu.Lock()
	if !h.lost && sent.Add(l.cfg.TTL).After(h.until) {
		h.until = sent.Add(l.cfg.TTL)
	}
	h.mu.Unlock()
	return nil
}

// Release gives the lease up, so that another owner takes it at once. It
// fails with an error matching ErrLost when this holding no longer holds it;
// the key is then left alone.
func (h *Held) Release(ctx context.Context) error {
	l := h.lease
	h.markLost()
	n, err := releaseScript.Run(ctx, l.cfg.Redis, []string{l.cfg.Key}, l.cfg.Owner, h.tokenArg()).Int()
	if err != nil {
		return fmt.Errorf("lease %s: release: %w", l.cfg.Key, err)
	}
	if n != 1 {
		return fmt.Errorf("%w: %s: token %d did not hold it at release", ErrLost, l.cfg.Key, h.token)
	}
	return nil
}

// Keep renews the holding every TTL/3 in the background until ctx ends, the
// lease is lost, or Until passes while renewals fail. The returned context
// ends then; stop ends the renewals and waits for them (it does not release
// the lease).
func (h *Held) Keep(ctx context.Context) (held context.Context, stop func()) {
	held, cancel := context.WithCancel(ctx)
	every := h.lease.cfg.TTL / 3
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		t := time.NewTimer(every)
		defer t.Stop()
		for {
			// Wake for the next renewal, or when the holding surely ends.
			wait := min(every, time.Until(h.Until()))
			if wait <= 0 {
				return
			}
			t.Reset(wait)
			select {
			case <-held.Done():
				return
			case <-t.C:
			}
			if !h.Valid(time.Now()) {
				return
			}
			if err := h.Renew(held); errors.Is(err, ErrLost) {
				return
			}
		}
	}()
	return held, func() { cancel(); wg.Wait() }
}

func (h *Held) markLost() {
	h.mu.Lock()
	h.lost = true
	h.mu.Unlock()
}

func (h *Held) tokenArg() string { return strconv.FormatUint(h.token, 10) }

// Fence is what a write fenced by a holding checks on the server: the lease
// at Key is still held by Owner with Token.
type Fence struct {
	Key   string
	Owner string
	Token uint64
}

// TokenArg is Token as the decimal string lease_held (FenceLua) compares.
func (f Fence) TokenArg() string { return strconv.FormatUint(f.Token, 10) }

// Check returns an error matching ErrLost unless the lease is still held by
// f's holding. Run it inside a WATCH of f.Key, before MULTI: if the lease
// changes hands between the check and EXEC, the EXEC aborts.
func (f Fence) Check(ctx context.Context, c redis.Cmdable) error {
	pipe := c.Pipeline()
	check := f.Queue(ctx, pipe)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("lease %s: read: %w", f.Key, err)
	}
	return check()
}

// Queue adds the reads of Check to pipe, so that a caller checking other
// keys too (under the same WATCH) pays one round trip; after pipe.Exec, the
// returned func gives Check's result.
func (f Fence) Queue(ctx context.Context, pipe redis.Pipeliner) (check func() error) {
	hm := pipe.HMGet(ctx, f.Key, FieldOwner, FieldToken, FieldExpires)
	now := pipe.Time(ctx)
	return func() error {
		if err := errors.Join(hm.Err(), now.Err()); err != nil {
			return fmt.Errorf("lease %s: read: %w", f.Key, err)
		}
		v := hm.Val()
		owner, _ := v[0].(string)
		tok, _ := v[1].(string)
		exp, _ := v[2].(string)
		e, _ := strconv.ParseInt(exp, 10, 64)
		if owner != f.Owner || tok != f.TokenArg() || e <= now.Val().UnixMilli() {
			return fmt.Errorf("%w: %s is held by %q (token %s), not %q (token %d)", ErrLost, f.Key, owner, tok, f.Owner, f.Token)
		}
		return nil
	}
}

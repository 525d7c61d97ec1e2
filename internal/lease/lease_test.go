package lease_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/eventline/eventline/internal/lease"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/redis/go-redis/v9"
)

func newLease(t *testing.T, rdb redis.Scripter, key, owner string, ttl time.Duration) *lease.Lease {
	t.Helper()
	l, err := lease.New(lease.Config{Redis: rdb, Key: key, Owner: owner, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConfigValidate(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	for _, c := range []lease.Config{
		{Key: "k", TTL: time.Second},
		{Redis: rdb, TTL: time.Second},
		{Redis: rdb, Key: "k"},
		{Redis: rdb, Key: "k", TTL: time.Millisecond},
	} {
		if _, err := lease.New(c); !errors.Is(err, lease.ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v, want ErrInvalidConfig", c, err)
		}
	}
}

func TestContentionOneHolder(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	const n = 8
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		winner []string
	)
	for i := range n {
		l := newLease(t, rdb, "{t}:lease", string(rune('a'+i)), time.Minute)
		wg.Go(func() {
			if _, err := l.TryAcquire(ctx); err == nil {
				mu.Lock()
				winner = append(winner, l.Owner())
				mu.Unlock()
			} else if !errors.Is(err, lease.ErrHeld) {
				t.Errorf("TryAcquire: %v, want nil or ErrHeld", err)
			}
		})
	}
	wg.Wait()
	if len(winner) != 1 {
		t.Fatalf("%d owners acquired the lease at once (%v), want exactly 1", len(winner), winner)
	}
	st, err := lease.Read(ctx, rdb, "{t}:lease")
	if err != nil || st.Owner != winner[0] || st.Token != 1 {
		t.Fatalf("Read = %+v, %v; want owner %q token 1", st, err, winner[0])
	}
}

func TestTakeoverAfterExpiryAndTokenMonotonic(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	ttl := 150 * time.Millisecond
	a := newLease(t, rdb, "k", "a", ttl)
	b := newLease(t, rdb, "k", "b", ttl)
	ha, err := a.TryAcquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.TryAcquire(ctx); !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("b.TryAcquire while a holds: %v, want ErrHeld", err)
	}
	var hb *lease.Held
	waitUntil(t, 10*time.Second, "b to take over after a's TTL", func() bool {
		hb, err = b.TryAcquire(ctx)
		return err == nil
	})
	if ha.Valid(time.Now()) {
		t.Fatalf("a still believes it holds the lease (until %v) after b took over", ha.Until())
	}
	if hb.Token() <= ha.Token() {
		t.Fatalf("token after takeover %d, want above %d", hb.Token(), ha.Token())
	}
	// The counter survives a release and a re-acquisition by anyone.
	if err := hb.Release(ctx); err != nil {
		t.Fatal(err)
	}
	prev := hb.Token()
	for i := range 5 {
		l := []*lease.Lease{a, b}[i%2]
		h, err := l.TryAcquire(ctx)
		if err != nil {
			t.Fatalf("acquisition %d after release: %v", i, err)
		}
		if h.Token() <= prev {
			t.Fatalf("acquisition %d: token %d, want above %d", i, h.Token(), prev)
		}
		prev = h.Token()
		if err := h.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRenewAfterLossFails(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	// Long enough that the renewal while holding comes before expiry
	// even on a loaded machine; the takeover below waits it out.
	ttl := time.Second
	a := newLease(t, rdb, "k", "a", ttl)
	b := newLease(t, rdb, "k", "b", time.Minute)
	ha, err := a.TryAcquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ha.Renew(ctx); err != nil {
		t.Fatalf("renew while holding: %v", err)
	}
	waitUntil(t, 10*time.Second, "b to take over", func() bool {
		_, err := b.TryAcquire(ctx)
		return err == nil
	})
	if err := ha.Renew(ctx); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("renew after takeover: %v, want ErrLost", err)
	}
	st, err := lease.Read(ctx, rdb, "k")
	if err != nil || st.Owner != "b" {
		t.Fatalf("after a's failed renewal: %+v, %v; want b still holding", st, err)
	}
	// Fence of the lost holding fails; the new holder's passes.
	if err := ha.Fence().Check(ctx, rdb); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("lost holding's fence: %v, want ErrLost", err)
	}
}

func TestReleaseOnlyByHolder(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	ttl := 100 * time.Millisecond
	a := newLease(t, rdb, "k", "a", ttl)
	b := newLease(t, rdb, "k", "b", time.Minute)
	ha, err := a.TryAcquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var hb *lease.Held
	waitUntil(t, 10*time.Second, "b to take over", func() bool {
		hb, err = b.TryAcquire(ctx)
		return err == nil
	})
	if err := ha.Release(ctx); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("release by the former holder: %v, want ErrLost", err)
	}
	if st, _ := lease.Read(ctx, rdb, "k"); st.Owner != "b" || st.Token != hb.Token() {
		t.Fatalf("after the former holder's release: %+v; want b with token %d", st, hb.Token())
	}
	if err := hb.Fence().Check(ctx, rdb); err != nil {
		t.Fatalf("holder's fence: %v", err)
	}
	if err := hb.Release(ctx); err != nil {
		t.Fatalf("release by the holder: %v", err)
	}
	if st, _ := lease.Read(ctx, rdb, "k"); st.Owner != "" {
		t.Fatalf("after release: %+v, want free", st)
	}
	if _, err := a.TryAcquire(ctx); err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
}

// TestFenceLua runs a script that writes only under the lease, the way a
// projection's fenced scripts do.
func TestFenceLua(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	write := redis.NewScript(lease.FenceLua + `
if not lease_held(KEYS[1], ARGV[1], ARGV[2]) then return 0 end
redis.call('SET', KEYS[2], ARGV[3])
return 1`)
	a := newLease(t, rdb, "{p}:lease", "a", 100*time.Millisecond)
	b := newLease(t, rdb, "{p}:lease", "b", time.Minute)
	ha, err := a.TryAcquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	run := func(f lease.Fence, v string) int {
		n, err := write.Run(ctx, rdb, []string{f.Key, "{p}:model"}, f.Owner, f.TokenArg(), v).Int()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := run(ha.Fence(), "a"); n != 1 {
		t.Fatalf("holder's fenced write refused")
	}
	var hb *lease.Held
	waitUntil(t, 10*time.Second, "b to take over", func() bool {
		hb, err = b.TryAcquire(ctx)
		return err == nil
	})
	if n := run(ha.Fence(), "stale"); n != 0 {
		t.Fatalf("former holder's fenced write accepted")
	}
	if n := run(hb.Fence(), "b"); n != 1 {
		t.Fatalf("new holder's fenced write refused")
	}
	if v := rdb.Get(ctx, "{p}:model").Val(); v != "b" {
		t.Fatalf("model = %q, want b", v)
	}
}

// TestFenceCheckAbortsWatchedTransaction shows the MULTI/EXEC use: a check
// under WATCH, then a takeover before EXEC, aborts the transaction.
func TestFenceCheckAbortsWatchedTransaction(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	a := newLease(t, rdb, "{p}:lease", "a", 100*time.Millisecond)
	b := newLease(t, rdb, "{p}:lease", "b", time.Minute)
	ha, err := a.TryAcquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = rdb.Watch(ctx, func(tx *redis.Tx) error {
		if err := ha.Fence().Check(ctx, tx); err != nil {
			return err
		}
		// Another owner takes over between the check and EXEC.
		waitUntil(t, 10*time.Second, "b to take over", func() bool {
			_, err := b.TryAcquire(ctx)
			return err == nil
		})
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "{p}:model", "stale", 0)
			return nil
		})
		return err
	}, ha.Fence().Key)
	if !errors.Is(err, redis.TxFailedErr) {
		t.Fatalf("EXEC after a takeover: %v, want redis.TxFailedErr", err)
	}
	if n := rdb.Exists(ctx, "{p}:model").Val(); n != 0 {
		t.Fatal("the fenced write landed after a takeover")
	}
}

// TestExpiryTrackedThroughOutage stops the server under a holder that keeps
// its lease: the holder's context must end by Until, since it cannot prove
// it still holds the lease, and not before Until.
func TestExpiryTrackedThroughOutage(t *testing.T) {
	srv := redistest.StartWith(t, redistest.Options{Persistent: true})
	if srv.Kind == redistest.KindEnv {
		t.Skip("cannot stop a server named by EVENTLINE_TEST_REDIS_URL")
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
	defer rdb.Close()
	ctx := context.Background()
	ttl := 300 * time.Millisecond
	l := newLease(t, rdb, "k", "a", ttl)
	h, err := l.TryAcquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	held, stop := h.Keep(ctx)
	defer stop()
	// Renewals while the server is up move Until forward.
	first := h.Until()
	waitUntil(t, 10*time.Second, "a renewal", func() bool { return h.Until().After(first) })

	srv.Kill()
	lastProof := h.Until()
	select {
	case <-held.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("holder's context still live 10s after the server stopped")
	}
	if now := time.Now(); now.Before(lastProof) {
		t.Fatalf("holder gave up at %v, before its proven holding ended at %v", now, lastProof)
	}
	if h.Valid(time.Now()) {
		t.Fatal("Valid after the holding ran out without renewal")
	}
	if err := h.Renew(ctx); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("Renew after the holding ran out: %v, want ErrLost", err)
	}
	// The server comes back with its data: the holding stays lost; the
	// owner acquires a new one with a greater token.
	srv.Restart()
	h2, err := l.Acquire(ctx, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if h2.Token() <= h.Token() {
		t.Fatalf("token %d after the outage, want above %d", h2.Token(), h.Token())
	}
}

func TestReadFree(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	st, err := lease.Read(context.Background(), rdb, "nothing")
	if err != nil || st != (lease.State{}) {
		t.Fatalf("Read of a missing key = %+v, %v; want zero", st, err)
	}
}

// TestFenceQueueSharesThePipeline checks the fence and another key in one
// round trip, as a projection's batch checks the lease and the active
// version; and a holding that expired without a successor fails the fence,
// as lease_held does.
func TestFenceQueueSharesThePipeline(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	rdb.Set(ctx, "{p}:active", "3", 0)
	l := newLease(t, rdb, "{p}:lease", "a", 100*time.Millisecond)
	h, err := l.TryAcquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pipe := rdb.Pipeline()
	check := h.Fence().Queue(ctx, pipe)
	active := pipe.Get(ctx, "{p}:active")
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if err := check(); err != nil || active.Val() != "3" {
		t.Fatalf("fence %v, active %q; want nil, 3", err, active.Val())
	}
	waitUntil(t, 10*time.Second, "the holding to expire on the server", func() bool {
		st, err := lease.Read(ctx, rdb, "{p}:lease")
		return err == nil && st.Owner == ""
	})
	if err := h.Fence().Check(ctx, rdb); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("fence of an expired holding: %v, want ErrLost", err)
	}
}

package projection

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/lease"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

// claimAs makes owner hold the rebuild claim of "c" for ttl, as a process
// serving requests does.
func claimAs(t *testing.T, rdb redis.UniversalClient, owner string, ttl time.Duration) {
	t.Helper()
	l, err := lease.New(lease.Config{Redis: rdb, Key: rebuildClaimKey("c"), Owner: owner, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.TryAcquire(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// builtC appends events records and waits until a runner of counts("c")
// has applied them to v1 on a private Redis; the runner runs until the test
// ends.
func builtC(t *testing.T, events int) (*redis.Client, eventstore.Store, eventstore.Position) {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	store := memory.New()
	head := appendEvents(t, store, 0, events)
	startRunner(t, newRunner(t, Config{Store: store, Redis: rdb, Projection: counts("c"), Logger: quietLogger()}))
	waitFor(t, rdb, "c", head)
	return rdb, store, head
}

// serverConfig is the Config of a process id serving rebuild requests of "c".
func serverConfig(store eventstore.Store, rdb redis.UniversalClient, id string) Config {
	return Config{Store: store, Redis: rdb, Projection: counts("c"), ID: id, LeaseTTL: time.Second, Logger: quietLogger()}
}

func TestRebuildRequestServedOnce(t *testing.T) {
	rdb, store, head := builtC(t, 200)
	ctx := context.Background()

	if err := RequestRebuild(ctx, rdb, "c"); err != nil {
		t.Fatal(err)
	}
	if err := RequestRebuild(ctx, rdb, "c"); !errors.Is(err, ErrRebuildRequested) {
		t.Fatalf("second request: %v, want ErrRebuildRequested", err)
	}
	// Two processes serve requests; the request makes one new generation.
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, id := range []string{"p1", "p2"} {
		wg.Go(func() {
			cfg := serverConfig(store, rdb, id)
			if err := ServeRebuildRequests(sctx, ServeRebuildOptions{Config: cfg, Interval: 5 * time.Millisecond}); err != nil {
				t.Error(err)
			}
		})
	}
	defer func() { cancel(); wg.Wait() }()
	waitUntil(t, 30*time.Second, "the request served", func() bool {
		return rdb.Exists(ctx, RebuildRequestKey("c")).Val() == 0
	})
	if a := rdb.Get(ctx, query.ActiveKey("c")).Val(); a != "1g1" {
		t.Fatalf("active build %q, want 1g1 (one rebuild)", a)
	}
	// The claim is released right after the request is removed: its owner
	// field goes (an expired claim would keep it).
	waitUntil(t, 10*time.Second, "the claim released", func() bool {
		return !rdb.HExists(ctx, rebuildClaimKey("c"), lease.FieldOwner).Val()
	})
	// The new generation serves the same model, and a later request is
	// served again.
	if err := RequestRebuild(ctx, rdb, "c"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "the second request served", func() bool {
		return rdb.Exists(ctx, RebuildRequestKey("c")).Val() == 0
	})
	if a := rdb.Get(ctx, query.ActiveKey("c")).Val(); a != "1g2" {
		t.Fatalf("active build %q, want 1g2", a)
	}
	if cp, _ := query.ReadCheckpoint(ctx, rdb, "c", query.Build{Version: 1, Generation: 2}); cp != head {
		t.Fatalf("checkpoint of the active build %s, want %s", cp, head)
	}
}

// TestRebuildRequestNotServedAgain: a server that saw the request before
// another one served it, removed it and released the claim, takes the claim
// but does not rebuild again.
func TestRebuildRequestNotServedAgain(t *testing.T) {
	rdb, store, _ := builtC(t, 50)
	ctx := context.Background()
	if err := RequestRebuild(ctx, rdb, "c"); err != nil {
		t.Fatal(err)
	}
	server := func(id string) Config { return serverConfig(store, rdb, id).withDefaults() }
	if err := serveRequest(ctx, server("p1"), RebuildOptions{}, quietLogger()); err != nil {
		t.Fatal(err)
	}
	if a := rdb.Get(ctx, query.ActiveKey("c")).Val(); a != "1g1" {
		t.Fatalf("active build %q after the request, want 1g1", a)
	}
	// p2 looked while the request was still there.
	if err := serveRequest(ctx, server("p2"), RebuildOptions{}, quietLogger()); err != nil {
		t.Fatal(err)
	}
	if a := rdb.Get(ctx, query.ActiveKey("c")).Val(); a != "1g1" {
		t.Fatalf("active build %q after a second server's stale look, want 1g1 (one rebuild)", a)
	}
	if rdb.HExists(ctx, rebuildClaimKey("c"), lease.FieldOwner).Val() {
		t.Fatal("the second server kept the claim")
	}
}

func TestRebuildRequestTakenOverFromADeadClaim(t *testing.T) {
	rdb, store, _ := builtC(t, 50)
	ctx := context.Background()
	if err := RequestRebuild(ctx, rdb, "c"); err != nil {
		t.Fatal(err)
	}
	// A projector claimed it and died: its claim expires, then this one
	// serves the request.
	claimAs(t, rdb, "dead-projector", 300*time.Millisecond)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		cfg := serverConfig(store, rdb, "p2")
		done <- ServeRebuildRequests(sctx, ServeRebuildOptions{Config: cfg, Interval: 5 * time.Millisecond})
	}()
	defer func() { cancel(); <-done }()
	waitUntil(t, 30*time.Second, "the request served after the claim expired", func() bool {
		return rdb.Exists(ctx, RebuildRequestKey("c")).Val() == 0
	})
	if a := rdb.Get(ctx, query.ActiveKey("c")).Val(); a != "1g1" {
		t.Fatalf("active build %q, want 1g1", a)
	}
}

// TestRebuildRequestStopsWhenTheClaimIsLost: a process whose claim on a
// request is taken from it (here: deleted and taken by another owner, as
// after an expiry it could not prevent) stops its rebuild at once and
// leaves the request, rather than building on beside the new claimant.
func TestRebuildRequestStopsWhenTheClaimIsLost(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	store := memory.New()
	ctx := context.Background()
	head := appendEvents(t, store, 0, 20)
	startRunner(t, newRunner(t, Config{Store: store, Redis: rdb, Projection: counts("c"), Logger: quietLogger()}))
	waitFor(t, rdb, "c", head)
	if err := RequestRebuild(ctx, rdb, "c"); err != nil {
		t.Fatal(err)
	}
	// The serving process's rebuild blocks in Apply until its context ends.
	var mu sync.Mutex
	entered, cancelled := 0, 0
	blocking := Define("c", 1, func(ctx context.Context, _ *Tx, _ eventstore.Record) error {
		mu.Lock()
		entered++
		mu.Unlock()
		<-ctx.Done()
		mu.Lock()
		cancelled++
		mu.Unlock()
		return ctx.Err()
	}, "inc", "add", "poison")
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		cfg := Config{Store: store, Redis: rdb, Projection: blocking, ID: "p1", LeaseTTL: 300 * time.Millisecond, Logger: quietLogger()}
		done <- ServeRebuildRequests(sctx, ServeRebuildOptions{Config: cfg, Interval: 5 * time.Millisecond})
	}()
	defer func() { cancel(); <-done }()
	waitUntil(t, 30*time.Second, "the rebuild to start applying", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return entered > 0
	})
	// Another process holds the claim now.
	if err := rdb.Del(ctx, rebuildClaimKey("c")).Err(); err != nil {
		t.Fatal(err)
	}
	claimAs(t, rdb, "other", time.Minute)
	waitUntil(t, 30*time.Second, "the rebuild to stop", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return cancelled == entered
	})
	if rdb.Exists(ctx, RebuildRequestKey("c")).Val() != 1 {
		t.Fatal("the request was removed by a process that lost its claim")
	}
	if st, err := lease.Read(ctx, rdb, rebuildClaimKey("c")); err != nil || st.Owner != "other" {
		t.Fatalf("claim %+v, %v; want it left to its new holder", st, err)
	}
}

// TestRebuildRequestStopsWhenTheClaimCannotBeRenewed: with Redis gone, the
// serving process cannot prove it still holds its claim; once the claim may
// have expired it stops its rebuild instead of going on unchecked.
func TestRebuildRequestStopsWhenTheClaimCannotBeRenewed(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	store := memory.New()
	ctx := context.Background()
	if err := RequestRebuild(ctx, rdb, "c"); err != nil {
		t.Fatal(err)
	}
	appendEvents(t, store, 0, 5)
	entered, cancelled := make(chan struct{}, 100), make(chan struct{}, 100)
	blocking := Define("c", 1, func(ctx context.Context, _ *Tx, _ eventstore.Record) error {
		entered <- struct{}{}
		<-ctx.Done()
		cancelled <- struct{}{}
		return ctx.Err()
	}, "inc", "add", "poison")
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		cfg := Config{Store: store, Redis: rdb, Projection: blocking, ID: "p1", LeaseTTL: 300 * time.Millisecond, Logger: quietLogger()}
		done <- ServeRebuildRequests(sctx, ServeRebuildOptions{Config: cfg, Interval: 5 * time.Millisecond})
	}()
	defer func() { cancel(); <-done }()
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the rebuild did not start")
	}
	srv.Kill()
	select {
	case <-cancelled:
	case <-time.After(30 * time.Second):
		t.Fatal("the rebuild went on after its claim could no longer be renewed")
	}
}

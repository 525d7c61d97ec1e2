package projection

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/query"
)

func TestRebuildRequestServedOnce(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	store := memory.New()
	ctx := context.Background()
	head := appendEvents(t, store, 0, 200)
	startRunner(t, newRunner(t, Config{Store: store, Redis: rdb, Projection: counts("c"), Logger: quietLogger()}))
	waitFor(t, rdb, "c", head)

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
			cfg := Config{Store: store, Redis: rdb, Projection: counts("c"), ID: id, LeaseTTL: time.Second, Logger: quietLogger()}
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
	if n := rdb.Exists(ctx, rebuildClaimKey("c")).Val(); n != 0 {
		t.Fatal("the claim was not released")
	}
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

func TestRebuildRequestTakenOverFromADeadClaim(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	store := memory.New()
	ctx := context.Background()
	head := appendEvents(t, store, 0, 50)
	startRunner(t, newRunner(t, Config{Store: store, Redis: rdb, Projection: counts("c"), Logger: quietLogger()}))
	waitFor(t, rdb, "c", head)
	if err := RequestRebuild(ctx, rdb, "c"); err != nil {
		t.Fatal(err)
	}
	// A projector claimed it and died: its claim expires, then this one
	// serves the request.
	if err := rdb.Set(ctx, rebuildClaimKey("c"), "dead-projector", 300*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		cfg := Config{Store: store, Redis: rdb, Projection: counts("c"), ID: "p2", LeaseTTL: time.Second, Logger: quietLogger()}
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

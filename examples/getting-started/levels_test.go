package main

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

func TestLevels(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb := redistest.Start(t).Client(t)
	store := memory.New()
	defer store.Close()
	reg := NewRegistry()

	// Write through the command handler, as the service does.
	stock, err := command.NewHandler(store, reg, Stock, command.Config{Name: "stock"})
	if err != nil {
		t.Fatal(err)
	}
	var last eventstore.Position
	for _, c := range []struct {
		sku string
		cmd Command
	}{
		{"apple", Receive{Quantity: 5}},
		{"pear", Receive{Quantity: 1}},
		{"apple", Ship{Quantity: 2}},
	} {
		res, err := stock.Handle(ctx, c.sku, c.cmd)
		if err != nil {
			t.Fatal(err)
		}
		last = res.Position
	}

	// Run the projection until it has applied the last write.
	runner, err := projection.New(projection.Config{Store: store, Redis: rdb, Projection: Levels(reg)})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runner.Run(runCtx) }()
	view := waitFor(ctx, t, rdb, last)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// The model is exactly these hashes.
	want := map[string]map[string]string{
		view.Key("item", "apple"): {"on_hand": "3", "received": "5", "shipped": "2"},
		view.Key("item", "pear"):  {"on_hand": "1", "received": "1"},
	}
	keys, err := rdb.Keys(ctx, view.Key("item", "*")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != len(want) {
		t.Errorf("model keys %v, want %d keys", keys, len(want))
	}
	for key, fields := range want {
		got, err := rdb.HGetAll(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, fields) {
			t.Errorf("%s = %v, want %v", key, got, fields)
		}
	}
}

// waitFor returns a View of the read model once it has applied position. A
// runner activates the model's first version once it has caught up with the
// log; until then query.WaitFor answers ErrNotReady.
func waitFor(ctx context.Context, t *testing.T, rdb redis.UniversalClient, position eventstore.Position) *query.View {
	t.Helper()
	for {
		view, err := query.WaitFor(ctx, rdb, LevelsName, position)
		if err == nil {
			return view
		}
		if !errors.Is(err, query.ErrNotReady) {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the read model never became active: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
}

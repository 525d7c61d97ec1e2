package main

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/projection/projectiontest"
	"github.com/eventline/eventline/query"
)

// TestLevelsSpec gives the projection records and the model they must make.
// projectiontest applies them in batches of one, two and all, so a model that
// depends on how the runner batches fails here. It would also apply them all a
// second time and expect the same model, but levels counts with HIncrBy and
// relies on the runner applying each record exactly once: OnceOnly says so.
func TestLevelsSpec(t *testing.T) {
	reg := NewRegistry()
	records := func(sku string, events ...any) []eventstore.Record {
		out := make([]eventstore.Record, len(events))
		for i, e := range events {
			ev, err := reg.Encode(e)
			if err != nil {
				t.Fatal(err)
			}
			out[i] = eventstore.Record{StreamID: "stock-" + sku, Event: ev}
		}
		return out
	}
	rdb := redistest.Start(t).Client(t)
	projectiontest.Run(t, rdb, Levels(reg), projectiontest.Case{
		Name:    "received twice, shipped once",
		Records: records("apple", Received{Quantity: 5}, Received{Quantity: 1}, Shipped{Quantity: 2}),
		Want: projectiontest.Model{
			"item:apple": map[string]any{"on_hand": 4, "received": 6, "shipped": 2},
		},
		OnceOnly: true,
	})
}

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
	runner, err := projection.NewRunner(projection.Config{Store: store, Redis: rdb, Projection: Levels(reg)})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runner.Run(runCtx) }()
	// WaitFor waits for the model's first version to become active and to
	// apply the last write.
	view, err := query.WaitFor(ctx, rdb, LevelsName, last)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// The model is exactly these hashes.
	want := map[string]map[string]string{
		view.Key("item", "apple"): {"on_hand": "3", "received": "5", "shipped": "2"},
		view.Key("item", "pear"):  {"on_hand": "1", "received": "1"},
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

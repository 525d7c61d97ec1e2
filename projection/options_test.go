package projection

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/query"
)

// TestOptionsValidate: every options struct refuses what its function would,
// with an error matching ErrInvalidConfig, and accepts a usable value.
func TestOptionsValidate(t *testing.T) {
	cfg := Config{Store: memory.New(), Redis: nil, Projection: counts("c")}
	for name, err := range map[string]error{
		"activate bad name":   ActivateOptions{Projection: "Bad Name", Build: query.Version(1)}.Validate(),
		"activate zero build": ActivateOptions{Projection: "c"}.Validate(),
		"retry bad name":      RetryDeadLetterOptions{Projection: ""}.Validate(),
		"retry bad build":     RetryDeadLetterOptions{Projection: "c", Build: query.Build{Generation: 1}}.Validate(),
		"rebuild progress":    RebuildOptions{ProgressEvery: -time.Second}.Validate(),
		"serve interval":      ServeRebuildOptions{Config: cfg, Interval: -1}.Validate(),
		"serve config":        ServeRebuildOptions{Config: cfg}.Validate(), // Redis is nil
	} {
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
	for name, err := range map[string]error{
		"activate": ActivateOptions{Projection: "c", Build: query.Build{Version: 2, Generation: 1}}.Validate(),
		"retry":    RetryDeadLetterOptions{Projection: "c"}.Validate(),
		"rebuild":  RebuildOptions{}.Validate(),
	} {
		if err != nil {
			t.Errorf("%s: %v, want nil", name, err)
		}
	}
	if err := ServeRebuildRequests(context.Background(), ServeRebuildOptions{Config: cfg}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("ServeRebuildRequests without Redis = %v, want ErrInvalidConfig", err)
	}
}

// TestActivate: Activate refuses a build whose checkpoint is behind
// (ErrBehind, nothing changes), then switches and returns the build it
// replaced.
func TestActivate(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	at := eventstore.Position{Commit: 10, Prepare: 10}
	if err := rdb.Set(ctx, query.ActiveKey("c"), "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	v2 := query.Version(2)
	rdb.HSet(ctx, query.CheckpointKey("c", v2), query.FieldCommit, "9", query.FieldPrepare, "9")
	if _, err := Activate(ctx, rdb, ActivateOptions{Projection: "c", Build: v2, AtLeast: at}); !errors.Is(err, ErrBehind) {
		t.Fatalf("Activate behind = %v, want ErrBehind", err)
	}
	if a := rdb.Get(ctx, query.ActiveKey("c")).Val(); a != "1" {
		t.Fatalf("active after a refused Activate = %q", a)
	}
	rdb.HSet(ctx, query.CheckpointKey("c", v2), query.FieldCommit, "10", query.FieldPrepare, "10")
	prev, err := Activate(ctx, rdb, ActivateOptions{Projection: "c", Build: v2, AtLeast: at})
	if err != nil || prev != query.Version(1) {
		t.Fatalf("Activate = %v, %v; want previous 1", prev, err)
	}
	if a := rdb.Get(ctx, query.ActiveKey("c")).Val(); a != "2" {
		t.Fatalf("active = %q, want 2", a)
	}
}

// TestRouterProjection: a Router's Projection has the Router's types as its
// Handles, including handlers and accepted types added after the call, and
// applies through the Router.
func TestRouterProjection(t *testing.T) {
	reg := eventstore.NewRegistry()
	eventstore.Register[lines](reg, "lines")
	r := NewRouter(reg)
	p := r.Projection("c", 3)
	Handle(r, func(context.Context, *Tx, eventstore.Record, lines) error { return errors.New("handled") })
	r.AcceptTypes("lines.v0", "lines")
	if p.Name() != "c" || p.Version() != 3 || !slices.Equal(p.Handles(), []string{"lines", "lines.v0"}) {
		t.Fatalf("projection %q v%d handles %v", p.Name(), p.Version(), p.Handles())
	}
	if err := Validate(p); err != nil {
		t.Fatal(err)
	}
	rec := eventstore.Record{Event: eventstore.Event{Type: "lines", Data: []byte(`{"Items":[1]}`)}}
	if err := p.Apply(context.Background(), &Tx{}, rec); err == nil || err.Error() != "handled" {
		t.Fatalf("Apply = %v, want the handler's error", err)
	}
}

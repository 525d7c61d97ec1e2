package command_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
)

type counterState struct{ n int }
type incr struct{ By int }
type incremented struct{ By int }

var counterDecider = command.Decider[counterState, incr, incremented]{
	Initial: func() counterState { return counterState{} },
	Decide: func(s counterState, c incr) ([]incremented, error) {
		if c.By <= 0 {
			return nil, errors.New("by must be positive")
		}
		return []incremented{{c.By}}, nil
	},
	Evolve: func(s counterState, e incremented) counterState { s.n += e.By; return s },
}

func TestHandlerMetrics(t *testing.T) {
	reg := eventstore.NewRegistry()
	eventstore.Register[incremented](reg, "counter.incremented")
	prom := prometheus.NewRegistry()
	h, err := command.NewHandler(memory.New(), reg, counterDecider, command.Config{Name: "counter", Registerer: prom})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := h.Handle(ctx, "1", incr{By: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Handle(ctx, "1", incr{By: 0}); !errors.Is(err, command.ErrRejected) {
		t.Fatalf("want a rejection, got %v", err)
	}
	idem := command.WithID(ctx, "cmd-1")
	for i := 0; i < 3; i++ {
		if _, err := h.Handle(idem, "2", incr{By: 2}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.Handle(ctx, "bad id!", incr{By: 1}); err == nil {
		t.Fatal("a bad id was accepted")
	}
	expect := `
# HELP eventline_command_handled_total Commands handled, by entity, command type and outcome.
# TYPE eventline_command_handled_total counter
eventline_command_handled_total{command="incr",entity="counter",outcome="invalid"} 1
eventline_command_handled_total{command="incr",entity="counter",outcome="ok"} 4
eventline_command_handled_total{command="incr",entity="counter",outcome="rejected"} 1
# HELP eventline_command_repeats_total Idempotent commands answered with the result of their first handling.
# TYPE eventline_command_repeats_total counter
eventline_command_repeats_total{entity="counter"} 2
`
	if err := testutil.GatherAndCompare(prom, strings.NewReader(expect), "eventline_command_handled_total", "eventline_command_repeats_total"); err != nil {
		t.Fatal(err)
	}
	if n, _ := testutil.GatherAndCount(prom, "eventline_command_append_duration_seconds", "eventline_command_handle_duration_seconds"); n != 2 {
		t.Fatalf("%d histogram series, want 2", n)
	}
}

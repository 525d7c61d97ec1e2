package projection

import (
	"context"
	"fmt"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/redistest"
)

// TestBatchSpanLinksTheCommands: a batch's span links the spans its handled
// records were written under, each once, at most MaxBatchLinks of them, and
// counts the rest; records the projection does not handle and records
// without trace context add no link.
func TestBatchSpanLinksTheCommands(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	store := memory.New()
	ctx := context.Background()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { _ = tp.Shutdown(ctx) })

	// MaxBatchLinks+8 commands of two "inc" events each, one "other" event
	// under a span of its own, and one "inc" without trace context: written
	// before the runner starts, so that they make one batch.
	var commands []trace.SpanContext
	var last eventstore.Position
	for i := range MaxBatchLinks + 8 {
		cctx, span := tp.Tracer("test").Start(ctx, "command")
		commands = append(commands, span.SpanContext())
		h := map[string]string{}
		traceContext.Inject(cctx, propagationCarrier(h))
		span.End()
		res, err := store.Append(ctx, fmt.Sprintf("s-%d", i), eventstore.Any,
			eventstore.Event{Type: "inc", Metadata: eventstore.Metadata{Headers: h}},
			eventstore.Event{Type: "inc", Metadata: eventstore.Metadata{Headers: h}})
		if err != nil {
			t.Fatal(err)
		}
		last = res.Position
	}
	octx, other := tp.Tracer("test").Start(ctx, "other")
	oh := map[string]string{}
	traceContext.Inject(octx, propagationCarrier(oh))
	other.End()
	for _, ev := range []eventstore.Event{{Type: "other", Metadata: eventstore.Metadata{Headers: oh}}, {Type: "inc"}} {
		res, err := store.Append(ctx, "s-x", eventstore.Any, ev)
		if err != nil {
			t.Fatal(err)
		}
		last = res.Position
	}

	startRunner(t, newRunner(t, Config{Store: store, Redis: rdb, Projection: counts("c"), BatchSize: 1000, TracerProvider: tp}))
	waitFor(t, rdb, "c", last)

	var batches []sdktrace.ReadOnlySpan
	waitUntil(t, 30e9, "the batch span", func() bool {
		batches = batches[:0]
		for _, s := range sr.Ended() {
			if s.Name() == "projection c batch" {
				batches = append(batches, s)
			}
		}
		return len(batches) > 0
	})
	linked, dropped := map[trace.SpanID]int{}, int64(0)
	for _, b := range batches {
		for _, l := range b.Links() {
			linked[l.SpanContext.SpanID()]++
		}
		for _, kv := range b.Attributes() {
			if kv.Key == "eventline.links.dropped" {
				dropped += kv.Value.AsInt64()
			}
		}
		if len(b.Links()) > MaxBatchLinks {
			t.Errorf("a batch span has %d links, more than MaxBatchLinks %d", len(b.Links()), MaxBatchLinks)
		}
	}
	if linked[other.SpanContext().SpanID()] != 0 {
		t.Error("the span of an event the projection does not handle is linked")
	}
	for i, sc := range commands {
		if linked[sc.SpanID()] > 1 {
			t.Errorf("command %d linked %d times", i, linked[sc.SpanID()])
		}
	}
	if got := int64(len(linked)) + dropped; got != int64(len(commands)) {
		t.Errorf("%d commands linked + %d dropped, want %d commands in all", len(linked), dropped, len(commands))
	}
	if len(batches) == 1 && (len(linked) != MaxBatchLinks || dropped != 8) {
		t.Errorf("one batch: %d links and %d dropped, want %d and 8", len(linked), dropped, MaxBatchLinks)
	}
}

func propagationCarrier(m map[string]string) propagation.MapCarrier { return propagation.MapCarrier(m) }

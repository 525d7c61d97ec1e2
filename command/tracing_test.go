package command_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
)

// TestTracingSpansAndTraceparent: with a TracerProvider, Handle runs in a
// "handle <Name>" span, child of the caller's span, with an "append <Name>"
// span inside it, and every event it appends carries the handle span's W3C
// trace context, so that readers of the log continue the trace.
func TestTracingSpansAndTraceparent(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	store := memory.New()
	h := mustHandler(t, store, command.Config{Name: "account", TracerProvider: tp})

	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	if _, err := h.Handle(ctx, "a1", openWithDeposit{Owner: "ann", Amount: 5}); err != nil {
		t.Fatal(err)
	}
	parent.End()
	if _, err := h.Handle(context.Background(), "a1", withdraw{Amount: 100}); err == nil {
		t.Fatal("overdraft accepted")
	}

	spans := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range sr.Ended() {
		spans[s.Name()] = append(spans[s.Name()], s)
	}
	if len(spans["handle account"]) != 2 || len(spans["append account"]) != 1 {
		t.Fatalf("spans %v, want 2 × handle account and 1 × append account", spanCounts(spans))
	}
	handle, appendSpan := spans["handle account"][0], spans["append account"][0]
	if handle.Parent().SpanID() != parent.SpanContext().SpanID() || handle.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("handle span's parent is %s, want the caller's span %s", handle.Parent().SpanID(), parent.SpanContext().SpanID())
	}
	if appendSpan.Parent().SpanID() != handle.SpanContext().SpanID() {
		t.Errorf("append span's parent is %s, want the handle span %s", appendSpan.Parent().SpanID(), handle.SpanContext().SpanID())
	}
	if got := attr(handle, "eventline.command.type"); got != "openWithDeposit" {
		t.Errorf("eventline.command.type = %q, want openWithDeposit", got)
	}
	if got := attr(handle, "eventline.outcome"); got != command.OutcomeOK {
		t.Errorf("eventline.outcome = %q, want %q", got, command.OutcomeOK)
	}
	if got := attr(spans["handle account"][1], "eventline.outcome"); got != command.OutcomeRejected {
		t.Errorf("refused command: eventline.outcome = %q, want %q", got, command.OutcomeRejected)
	}

	recs := readAll(t, store, "account-a1")
	if len(recs) != 2 {
		t.Fatalf("%d events, want 2", len(recs))
	}
	for _, rec := range recs {
		sc := spanContextOf(rec)
		if sc.TraceID() != handle.SpanContext().TraceID() || sc.SpanID() != handle.SpanContext().SpanID() {
			t.Errorf("event %d: traceparent %q, want the handle span %s", rec.Version,
				rec.Metadata.Headers[eventstore.HeaderTraceparent], handle.SpanContext().SpanID())
		}
	}
}

// TestTracingOffWritesNoHeader: with no TracerProvider (the global no-op),
// events carry no trace context even when the caller's context has a span.
func TestTracingOffWritesNoHeader(t *testing.T) {
	store := memory.New()
	h := mustHandler(t, store, command.Config{Name: "account"})
	if _, err := h.Handle(context.Background(), "a1", openAccount{Owner: "ann"}); err != nil {
		t.Fatal(err)
	}
	for _, rec := range readAll(t, store, "account-a1") {
		if v, ok := rec.Metadata.Headers[eventstore.HeaderTraceparent]; ok {
			t.Errorf("event %d carries traceparent %q with tracing off", rec.Version, v)
		}
	}
}

func spanContextOf(rec eventstore.Record) trace.SpanContext {
	tid, _ := trace.TraceIDFromHex(tp(rec)[3:35])
	sid, _ := trace.SpanIDFromHex(tp(rec)[36:52])
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid})
}

// tp returns rec's traceparent, or a string of the right length that parses
// to invalid ids.
func tp(rec eventstore.Record) string {
	v := rec.Metadata.Headers[eventstore.HeaderTraceparent]
	if len(v) != 55 {
		return "00-00000000000000000000000000000000-0000000000000000-00"
	}
	return v
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

func spanCounts(m map[string][]sdktrace.ReadOnlySpan) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[k] = len(v)
	}
	return out
}

// BenchmarkHandleTracing measures Handle on the in-memory store (so that the
// handler's own cost is what shows) with tracing off (no TracerProvider: the
// global no-op) and on (an SDK provider sampling every command, spans batched
// to an exporter that drops them), one caller over 10,000 streams.
func BenchmarkHandleTracing(b *testing.B) {
	for _, c := range []struct {
		name string
		tp   func(b *testing.B) trace.TracerProvider
	}{
		{"off", func(*testing.B) trace.TracerProvider { return nil }},
		{"on", func(b *testing.B) trace.TracerProvider {
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
			b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			return tp
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			h, err := command.NewHandler(memory.New(), tallyRegistry(), tally, command.Config{Name: "tally", TracerProvider: c.tp(b)})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := h.Handle(ctx, entityOf(i, 10000), tallyCommand{N: 1}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

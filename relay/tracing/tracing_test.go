package tracing_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/google/uuid"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/relay/tracing"
)

func record(headers map[string]string) eventstore.Record {
	return eventstore.Record{
		Event: eventstore.Event{ID: uuid.New(), Type: "cart.checked_out", Data: []byte(`{}`),
			Metadata: eventstore.Metadata{Headers: headers}},
		StreamID: "cart-1", Version: 1, Position: eventstore.Position{Commit: 1, Prepare: 1},
	}
}

// deliver publishes msg through pub to a router whose one handler runs
// behind mw, and returns the context the handler saw.
func deliver(t *testing.T, pub func(message.Publisher) message.Publisher, mw message.HandlerMiddleware, msg *message.Message,
	handle func(*message.Message)) {
	t.Helper()
	ch := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, watermill.NopLogger{})
	t.Cleanup(func() { _ = ch.Close() })
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	router.AddConsumerHandler("h", "events", ch, func(m *message.Message) error {
		handle(m)
		close(done)
		return nil
	})
	router.AddMiddleware(mw)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- router.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	})
	<-router.Running()
	if err := pub(ch).Publish("events", msg); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("message not handled within 30s")
	}
}

// TestOneTraceAcrossTheBroker: the command's span, the relay's publish, the
// consumer's processing and the work inside it are one trace, each the
// parent of the next.
func TestOneTraceAcrossTheBroker(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	ctx, cmd := tp.Tracer("test").Start(context.Background(), "command")
	headers := tracing.InjectEvent(ctx, nil)
	cmd.End()
	if headers[tracing.HeaderTraceparent] == "" {
		t.Fatalf("InjectEvent wrote no traceparent: %v", headers)
	}
	msg := relay.NewMessage(context.Background(), record(headers))
	deliver(t, func(p message.Publisher) message.Publisher { return tracing.Publisher(p, tp) }, tracing.Middleware(tp), msg,
		func(m *message.Message) {
			_, step := tp.Tracer("test").Start(m.Context(), "saga step")
			step.End()
		})

	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range sr.Ended() {
		byName[s.Name()] = s
	}
	command, publish, process, step := byName["command"], byName["publish events"], byName["process cart.checked_out"], byName["saga step"]
	if command == nil || publish == nil || process == nil || step == nil {
		t.Fatalf("spans %v, want command, publish events, process cart.checked_out, saga step", keys(byName))
	}
	for _, c := range []struct {
		child, parent sdktrace.ReadOnlySpan
		kind          trace.SpanKind
	}{
		{publish, command, trace.SpanKindProducer},
		{process, publish, trace.SpanKindConsumer},
		{step, process, trace.SpanKindInternal},
	} {
		if c.child.Parent().SpanID() != c.parent.SpanContext().SpanID() || c.child.SpanContext().TraceID() != command.SpanContext().TraceID() {
			t.Errorf("%s: parent %s in trace %s, want %s in trace %s", c.child.Name(), c.child.Parent().SpanID(),
				c.child.SpanContext().TraceID(), c.parent.Name(), command.SpanContext().TraceID())
		}
		if c.child.SpanKind() != c.kind {
			t.Errorf("%s: kind %s, want %s", c.child.Name(), c.child.SpanKind(), c.kind)
		}
	}
}

func keys(m map[string]sdktrace.ReadOnlySpan) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestOffChangesNothing: without a TracerProvider the publisher is the one
// given and messages cross without trace metadata or a span.
func TestOffChangesNothing(t *testing.T) {
	ch := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { _ = ch.Close() })
	if got := tracing.Publisher(ch, nil); got != message.Publisher(ch) {
		t.Fatalf("Publisher(pub, nil) = %T, want pub itself", got)
	}
	if h := tracing.InjectEvent(context.Background(), nil); h != nil {
		t.Fatalf("InjectEvent without a span wrote %v", h)
	}
	msg := relay.NewMessage(context.Background(), record(nil))
	deliver(t, func(p message.Publisher) message.Publisher { return tracing.Publisher(p, nil) }, tracing.Middleware(nil), msg,
		func(m *message.Message) {
			if v := m.Metadata.Get(tracing.MetaTraceparent); v != "" {
				t.Errorf("message carries traceparent %q with tracing off", v)
			}
			if trace.SpanContextFromContext(m.Context()).IsValid() {
				t.Error("handler runs in a span with tracing off")
			}
		})
}

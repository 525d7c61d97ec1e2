// Package tracing carries W3C trace context (traceparent, tracestate) across
// the relay's broker hop with OpenTelemetry: a Publisher decorator that gives
// every message a producer span, child of the trace context the event was
// written under, and a watermill handler middleware that gives its handling a
// consumer span, child of the producer span. The saga's commands then run in
// that context.
//
// The event's own trace context travels as event headers, the keys
// HeaderTraceparent and HeaderTracestate of eventstore.Metadata.Headers, which
// the relay copies into message metadata under relay.MetaHeaderPrefix; whoever
// appends the event (the command side) writes them. The message carries the
// producer span's context under MetaTraceparent and MetaTracestate.
//
// Tracing is off unless a TracerProvider is given: with a nil provider,
// Publisher returns the publisher it was given and Middleware passes messages
// through untouched, so it costs nothing.
package tracing

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/relay"
)

// Keys of the trace context.
const (
	// HeaderTraceparent and HeaderTracestate are the event headers holding
	// the trace context the event was written under.
	HeaderTraceparent = eventstore.HeaderTraceparent
	HeaderTracestate  = eventstore.HeaderTracestate
	// MetaTraceparent and MetaTracestate are the message metadata holding
	// the producer span's context.
	MetaTraceparent = "traceparent"
	MetaTracestate  = "tracestate"
)

// ScopeName is the instrumentation scope of the spans.
const ScopeName = "github.com/eventline/eventline/relay/tracing"

var w3c = propagation.TraceContext{}

// prefixed reads and writes the keys of a carrier under a prefix of a map.
type prefixed struct {
	m      map[string]string
	prefix string
}

func (p prefixed) Get(key string) string { return p.m[p.prefix+key] }
func (p prefixed) Set(key, value string) { p.m[p.prefix+key] = value }
func (p prefixed) Keys() []string        { return []string{HeaderTraceparent, HeaderTracestate} }

// EventContext returns ctx with the trace context of the event a message
// carries (its relay.MetaHeaderPrefix headers), if any.
func EventContext(ctx context.Context, msg *message.Message) context.Context {
	return w3c.Extract(ctx, prefixed{m: msg.Metadata, prefix: relay.MetaHeaderPrefix})
}

// MessageContext returns ctx with the producer span context a message
// carries (MetaTraceparent), if any.
func MessageContext(ctx context.Context, msg *message.Message) context.Context {
	return w3c.Extract(ctx, propagation.MapCarrier(msg.Metadata))
}

// InjectEvent writes the trace context of ctx into an event's headers
// (HeaderTraceparent, HeaderTracestate), creating the map when needed, and
// returns it. With no span in ctx it writes nothing.
func InjectEvent(ctx context.Context, headers map[string]string) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return headers
	}
	if headers == nil {
		headers = map[string]string{}
	}
	w3c.Inject(ctx, propagation.MapCarrier(headers))
	return headers
}

type publisher struct {
	message.Publisher
	tracer trace.Tracer
}

// Publisher returns pub with a producer span per message ("publish
// <topic>"), child of the trace context of the message's event, and that
// span's context written into the message's metadata. A nil tp returns pub
// itself.
func Publisher(pub message.Publisher, tp trace.TracerProvider) message.Publisher {
	if tp == nil {
		return pub
	}
	return &publisher{Publisher: pub, tracer: tp.Tracer(ScopeName)}
}

func (p *publisher) Publish(topic string, msgs ...*message.Message) error {
	spans := make([]trace.Span, 0, len(msgs))
	for _, msg := range msgs {
		if msg == nil {
			continue
		}
		ctx := EventContext(msg.Context(), msg)
		ctx, span := p.tracer.Start(ctx, "publish "+topic, trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(
				attribute.String("messaging.operation.type", "send"),
				attribute.String("messaging.destination.name", topic),
				attribute.String("messaging.message.id", msg.UUID),
				attribute.String("eventline.event.type", msg.Metadata.Get(relay.MetaType)),
				attribute.String("eventline.stream", msg.Metadata.Get(relay.MetaStream)),
			))
		w3c.Inject(ctx, propagation.MapCarrier(msg.Metadata))
		spans = append(spans, span)
	}
	err := p.Publisher.Publish(topic, msgs...)
	for _, span := range spans {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "publish failed")
		}
		span.End()
	}
	return err
}

// Middleware returns a watermill handler middleware that handles each
// message in a consumer span ("process <event type>"), child of the
// producer span the message carries, with the message's context set to it so
// that the handler's work (the saga's commands) joins the trace. A nil tp
// returns a middleware that changes nothing.
func Middleware(tp trace.TracerProvider) message.HandlerMiddleware {
	if tp == nil {
		return func(h message.HandlerFunc) message.HandlerFunc { return h }
	}
	tracer := tp.Tracer(ScopeName)
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			ctx := MessageContext(msg.Context(), msg)
			ctx, span := tracer.Start(ctx, "process "+msg.Metadata.Get(relay.MetaType),
				trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(
					attribute.String("messaging.operation.type", "process"),
					attribute.String("messaging.message.id", msg.UUID),
					attribute.String("eventline.event.type", msg.Metadata.Get(relay.MetaType)),
				))
			defer span.End()
			msg.SetContext(ctx)
			out, err := h(msg)
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, "handling failed")
			}
			return out, err
		}
	}
}

package relay

import (
	"context"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/eventline/eventline/eventstore"
)

// Metadata keys the relay sets on every message. Consumers read them back with
// RecordFrom; they are part of the wire format, so they never change.
const (
	// MetaEventID is the event's id (a UUID); it is also the message UUID and the
	// key Deduplicate uses.
	MetaEventID = "eventline_event_id"
	// MetaType is the event's type name, e.g. "order.placed".
	MetaType = "eventline_type"
	// MetaStream is the id of the stream the event belongs to.
	MetaStream = "eventline_stream"
	// MetaVersion is the event's version in its stream, in decimal, from 1.
	MetaVersion = "eventline_version"
	// MetaPosition is the event's global position as its opaque token
	// (eventstore.Position.String).
	MetaPosition = "eventline_position"
	// MetaRecordedAt is when the store committed the event, RFC 3339 with
	// nanoseconds, UTC.
	MetaRecordedAt = "eventline_recorded_at"
	// MetaCorrelationID is the event's correlation id; absent when it has none.
	MetaCorrelationID = "eventline_correlation_id"
	// MetaCausationID is the event's causation id; absent when it has none.
	MetaCausationID = "eventline_causation_id"
	// MetaHeaderPrefix prefixes each of the event's headers: header "tenant"
	// travels as metadata "eventline_h_tenant".
	MetaHeaderPrefix = "eventline_h_"
)

// NewMessage returns the watermill message the relay publishes for rec: UUID and
// MetaEventID are the event id, the payload is the event data, and the metadata
// carries the Meta* keys. watermill's own correlation key
// (middleware.CorrelationIDMetadataKey) is set too, to the event's correlation
// id or, when it has none, to the event id (the event starts a correlation), so
// that watermill's CorrelationID middleware carries it to produced messages.
func NewMessage(ctx context.Context, rec eventstore.Record) *message.Message {
	id := rec.ID.String()
	msg := message.NewMessage(id, message.Payload(rec.Data))
	msg.SetContext(ctx)
	md := msg.Metadata
	md[MetaEventID] = id
	md[MetaType] = rec.Type
	md[MetaStream] = rec.StreamID
	md[MetaVersion] = strconv.FormatUint(rec.Version, 10)
	md[MetaPosition] = rec.Position.String()
	md[MetaRecordedAt] = rec.RecordedAt.UTC().Format(time.RFC3339Nano)
	if c := rec.Metadata.CorrelationID; c != "" {
		md[MetaCorrelationID] = c
		md[middleware.CorrelationIDMetadataKey] = c
	} else {
		md[middleware.CorrelationIDMetadataKey] = id
	}
	if c := rec.Metadata.CausationID; c != "" {
		md[MetaCausationID] = c
	}
	for k, v := range rec.Metadata.Headers {
		md[MetaHeaderPrefix+k] = v
	}
	return msg
}

// TopicByType returns a topic function that sends each record to prefix
// followed by its type name: TopicByType("cart.")(rec of type "order.placed")
// is "cart.order.placed".
func TopicByType(prefix string) func(eventstore.Record) string {
	return func(rec eventstore.Record) string { return prefix + rec.Type }
}

// Types returns a filter that forwards only records whose type is one of names.
func Types(names ...string) func(eventstore.Record) bool {
	set := make(map[string]struct{}, len(names))
	for _, n := range names {
		set[n] = struct{}{}
	}
	return func(rec eventstore.Record) bool {
		_, ok := set[rec.Type]
		return ok
	}
}

package relay

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/eventline/eventline/eventstore"
	"github.com/google/uuid"
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

// ErrNotRelayed means a message lacks the metadata the relay writes, or carries
// malformed values in it, so it cannot be turned back into a record.
var ErrNotRelayed = errors.New("relay: message was not written by the relay")

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

// RecordFrom turns a message published by the relay back into the record it was
// made from. The record's Data aliases the message payload. A message missing
// the relay's metadata, or with malformed values in it, gives an error matching
// ErrNotRelayed that names the message UUID.
func RecordFrom(msg *message.Message) (eventstore.Record, error) {
	if msg == nil {
		return eventstore.Record{}, fmt.Errorf("%w: nil message", ErrNotRelayed)
	}
	md := msg.Metadata
	bad := func(key string) error {
		return fmt.Errorf("%w: message %q: metadata %s is %.64q", ErrNotRelayed, msg.UUID, key, md.Get(key))
	}
	var rec eventstore.Record
	var err error
	if rec.ID, err = uuid.Parse(md.Get(MetaEventID)); err != nil {
		return eventstore.Record{}, bad(MetaEventID)
	}
	if rec.Type = md.Get(MetaType); rec.Type == "" {
		return eventstore.Record{}, bad(MetaType)
	}
	if rec.StreamID = md.Get(MetaStream); rec.StreamID == "" {
		return eventstore.Record{}, bad(MetaStream)
	}
	if rec.Version, err = strconv.ParseUint(md.Get(MetaVersion), 10, 64); err != nil || rec.Version == 0 {
		return eventstore.Record{}, bad(MetaVersion)
	}
	if rec.Position, err = eventstore.ParsePosition(md.Get(MetaPosition)); err != nil || rec.Position.IsZero() {
		return eventstore.Record{}, bad(MetaPosition)
	}
	if rec.RecordedAt, err = time.Parse(time.RFC3339Nano, md.Get(MetaRecordedAt)); err != nil {
		return eventstore.Record{}, bad(MetaRecordedAt)
	}
	rec.Data = msg.Payload
	rec.Metadata.CorrelationID = md.Get(MetaCorrelationID)
	rec.Metadata.CausationID = md.Get(MetaCausationID)
	for k, v := range md {
		if name, ok := strings.CutPrefix(k, MetaHeaderPrefix); ok {
			if rec.Metadata.Headers == nil {
				rec.Metadata.Headers = map[string]string{}
			}
			rec.Metadata.Headers[name] = v
		}
	}
	return rec, nil
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

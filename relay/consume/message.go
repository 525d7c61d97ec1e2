package consume

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/relay"
	"github.com/google/uuid"
)

// ErrNotRelayed means a message lacks the metadata the relay writes, or carries
// malformed values in it, so it cannot be turned back into a record.
var ErrNotRelayed = errors.New("consume: message was not written by the relay")

// RecordFrom turns a message published by the relay back into the record it was
// made from ([relay.NewMessage] is the other way). The record's Data aliases the message payload. A message missing
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
	if rec.ID, err = uuid.Parse(md.Get(relay.MetaEventID)); err != nil {
		return eventstore.Record{}, bad(relay.MetaEventID)
	}
	if rec.Type = md.Get(relay.MetaType); rec.Type == "" {
		return eventstore.Record{}, bad(relay.MetaType)
	}
	if rec.StreamID = md.Get(relay.MetaStream); rec.StreamID == "" {
		return eventstore.Record{}, bad(relay.MetaStream)
	}
	if rec.Version, err = strconv.ParseUint(md.Get(relay.MetaVersion), 10, 64); err != nil || rec.Version == 0 {
		return eventstore.Record{}, bad(relay.MetaVersion)
	}
	if rec.Position, err = eventstore.ParsePosition(md.Get(relay.MetaPosition)); err != nil || rec.Position.IsZero() {
		return eventstore.Record{}, bad(relay.MetaPosition)
	}
	if rec.RecordedAt, err = time.Parse(time.RFC3339Nano, md.Get(relay.MetaRecordedAt)); err != nil {
		return eventstore.Record{}, bad(relay.MetaRecordedAt)
	}
	rec.Data = msg.Payload
	rec.Metadata.CorrelationID = md.Get(relay.MetaCorrelationID)
	rec.Metadata.CausationID = md.Get(relay.MetaCausationID)
	for k, v := range md {
		if name, ok := strings.CutPrefix(k, relay.MetaHeaderPrefix); ok {
			if rec.Metadata.Headers == nil {
				rec.Metadata.Headers = map[string]string{}
			}
			rec.Metadata.Headers[name] = v
		}
	}
	return rec, nil
}

package eventstore

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Event is an event to append.
type Event struct {
	// ID identifies the event across the whole log. Appending the same ids again
	// with the same expectation is idempotent. A zero ID is replaced by a random
	// time-ordered one (UUIDv7) when the event is appended.
	ID uuid.UUID
	// Type is the stable type name, e.g. "cart.item_added". Required.
	Type string
	// Data is the event's payload, usually JSON. It may be empty.
	Data []byte
	// Metadata travels with the event.
	Metadata Metadata
}

// Metadata is what the framework and the application know about an event besides
// its data: which request it belongs to and what caused it.
type Metadata struct {
	// CorrelationID ties together everything done for one original request.
	CorrelationID string `json:"correlation_id,omitempty"`
	// CausationID is the id of the command or event that caused this event.
	CausationID string `json:"causation_id,omitempty"`
	// Headers are free-form string pairs.
	Headers map[string]string `json:"headers,omitempty"`
}

// Keys of Metadata.Headers that carry the W3C trace context
// (https://www.w3.org/TR/trace-context/) the event was written under, so that
// a trace continues across the store and the broker: the command handler
// writes them when its context holds a span, and the projection runner and the
// relay read them.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// Record is an event as stored in the log.
type Record struct {
	Event
	// StreamID names the stream the event belongs to.
	StreamID string
	// Version is the event's place in its stream, from 1.
	Version uint64
	// Position is the event's place in the global log.
	Position Position
	// RecordedAt is when the store committed the event.
	RecordedAt time.Time
}

// AppendResult says what an append wrote.
type AppendResult struct {
	// StreamID is the stream appended to.
	StreamID string
	// FirstVersion and LastVersion are the versions of the first and last event
	// written; after an append of no events both are the stream's version.
	FirstVersion, LastVersion uint64
	// Position is the position of the last event written, exactly as readers see
	// it; a reader that has reached Position has seen every event of the append.
	Position Position
	// Repeated is true when the append wrote nothing because every event's id
	// was already in the stream at the place the expectation allows: an earlier
	// append with the same ids succeeded. The versions and position are that
	// earlier append's. What the stream holds there is what the earlier append
	// wrote, which may differ from the events given to this one, so a caller
	// that needs the stored events reads them back rather than trusting its own.
	Repeated bool
}

// Limits shared by every backend.
const (
	// MaxStreamIDLen is the longest stream id, in bytes.
	MaxStreamIDLen = 256
	// MaxTypeLen is the longest event type name, in bytes.
	MaxTypeLen = 256
)

// ValidateStreamID returns an error matching ErrInvalidStreamID unless id is
// non-empty, at most MaxStreamIDLen bytes of valid UTF-8, free of control and
// space characters, and does not start with '$' (reserved for system streams).
func ValidateStreamID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrInvalidStreamID)
	case len(id) > MaxStreamIDLen:
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidStreamID, len(id), MaxStreamIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidStreamID, id)
	case strings.HasPrefix(id, "$"):
		return fmt.Errorf("%w: %q: names starting with '$' are reserved", ErrInvalidStreamID, id)
	}
	for _, r := range id {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return fmt.Errorf("%w: %q contains a space or control character", ErrInvalidStreamID, id)
		}
	}
	return nil
}

// PrepareAppend validates an append's arguments the way every backend must
// (an id named twice in one append is ErrDuplicateEvent), and gives events
// without an ID a time-ordered one. It changes the events in place.
func PrepareAppend(stream string, expected ExpectedVersion, events []Event, maxEventSize int) error {
	if err := ValidateStreamID(stream); err != nil {
		return err
	}
	if err := expected.Validate(); err != nil {
		return err
	}
	for i := range events {
		e := &events[i]
		if e.Type == "" || len(e.Type) > MaxTypeLen || !utf8.ValidString(e.Type) {
			return fmt.Errorf("%w: event %d for stream %q: type name must be 1 to %d bytes of UTF-8",
				ErrInvalidEvent, i, stream, MaxTypeLen)
		}
		if maxEventSize > 0 {
			size := len(e.Data) + len(e.Metadata.CorrelationID) + len(e.Metadata.CausationID)
			for k, v := range e.Metadata.Headers {
				size += len(k) + len(v)
			}
			if size > maxEventSize {
				return fmt.Errorf("%w: event %d (%s) for stream %q is %d bytes, the limit is %d",
					ErrTooLarge, i, e.Type, stream, size, maxEventSize)
			}
		}
		if e.ID == uuid.Nil {
			e.ID = newEventID()
		}
	}
	if len(events) > 1 {
		seen := make(map[uuid.UUID]struct{}, len(events))
		for i, e := range events {
			if _, dup := seen[e.ID]; dup {
				return fmt.Errorf("%w: event %d for stream %q repeats id %s within the append",
					ErrDuplicateEvent, i, stream, e.ID)
			}
			seen[e.ID] = struct{}{}
		}
	}
	return nil
}

// newEventID returns a time-ordered UUIDv7: ids that arrive in time order keep
// a unique index on them append-mostly, which measurably speeds inserts.
func newEventID() uuid.UUID {
	if id, err := uuid.NewV7(); err == nil {
		return id
	}
	return uuid.New()
}

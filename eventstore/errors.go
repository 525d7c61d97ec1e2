package eventstore

import (
	"errors"
	"fmt"
)

var (
	// ErrWrongVersion means an append's expected version did not match the
	// stream. The error is a *WrongVersionError with the details.
	ErrWrongVersion = errors.New("eventstore: wrong expected version")
	// ErrStreamNotFound means a read named a stream that has no events.
	ErrStreamNotFound = errors.New("eventstore: stream not found")
	// ErrStreamDeleted means the stream was deleted or tombstoned.
	ErrStreamDeleted = errors.New("eventstore: stream deleted")
	// ErrDuplicateEvent means an event id is already in the log, and the append is
	// not an exact repeat of the append that wrote it.
	ErrDuplicateEvent = errors.New("eventstore: duplicate event id")
	// ErrInvalidStreamID means a stream id is empty, too long or malformed.
	ErrInvalidStreamID = errors.New("eventstore: invalid stream id")
	// ErrInvalidEvent means an event cannot be appended as given (no type name,
	// a malformed expected version, one event id twice in one append).
	ErrInvalidEvent = errors.New("eventstore: invalid event")
	// ErrTooLarge means an event's data and metadata exceed the backend's limit.
	ErrTooLarge = errors.New("eventstore: event too large")
	// ErrInvalidPosition means a position token could not be parsed.
	ErrInvalidPosition = errors.New("eventstore: invalid position")
	// ErrUnknownEventType means a Registry has no type for a record's type name.
	ErrUnknownEventType = errors.New("eventstore: unknown event type")
	// ErrDecode means a record's data could not be decoded into its Go type.
	ErrDecode = errors.New("eventstore: cannot decode event")
	// ErrUnavailable means the backend could not be reached. Retrying later may
	// succeed.
	ErrUnavailable = errors.New("eventstore: store unavailable")
	// ErrClosed means the Store was closed.
	ErrClosed = errors.New("eventstore: store closed")
)

// WrongVersionError is the error behind ErrWrongVersion.
type WrongVersionError struct {
	StreamID string
	Expected ExpectedVersion
	// Actual is the stream's version when the append was refused; 0 means the
	// stream does not exist.
	Actual uint64
}

// Error names the stream and both versions.
func (e *WrongVersionError) Error() string {
	return fmt.Sprintf("eventstore: wrong expected version for stream %q: expected %s, actual %d",
		e.StreamID, e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrWrongVersion) true.
func (e *WrongVersionError) Is(target error) bool { return target == ErrWrongVersion }

// RecordError wraps an error about one record of the log (an unknown type, data
// that does not decode) with the record's stream, version, position and type.
type RecordError struct {
	StreamID string
	Version  uint64
	Position Position
	Type     string
	Err      error
}

// Error names the record and the cause.
func (e *RecordError) Error() string {
	return fmt.Sprintf("event %q at position %s (stream %q version %d): %v",
		e.Type, e.Position, e.StreamID, e.Version, e.Err)
}

// Unwrap returns the cause, so that errors.Is finds ErrUnknownEventType or
// ErrDecode.
func (e *RecordError) Unwrap() error { return e.Err }

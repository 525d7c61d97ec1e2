package command

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidConfig means NewHandler was given something it cannot use: a
	// Config that fails Validate, a nil store or registry, or an incomplete
	// decider.
	ErrInvalidConfig = errors.New("command: invalid config")
	// ErrInvalidID means an entity id or a command id cannot be used: see
	// ValidateID and WithID.
	ErrInvalidID = errors.New("command: invalid id")
	// ErrConflict means Handle gave up after Config.MaxAttempts appends that each
	// met a concurrent write to the same stream. The error also matches the last
	// append's error, usually eventstore.ErrWrongVersion.
	ErrConflict = errors.New("command: too many concurrent writes")
	// ErrIdempotencyConflict means a command id was handled before with a
	// different command: the id was reused for another request.
	ErrIdempotencyConflict = errors.New("command: command id reused for a different command")
	// ErrRejected matches every *RejectedError: the decider refused the command.
	ErrRejected = errors.New("command: rejected")
)

// RejectedError is how Handle returns an error from Decider.Decide: a domain
// rule refused the command, nothing was written, and retrying the same command
// on the same state would fail again. It unwraps to the domain's own error, so
// errors.Is(err, cart.ErrCheckedOut) and errors.As work as if Decide's error
// were returned directly, and errors.Is(err, ErrRejected) tells any domain
// refusal from an infrastructure failure.
type RejectedError struct {
	// StreamID is the stream the command was handled against.
	StreamID string
	// Err is the error Decide returned.
	Err error
}

// Error names the stream and the domain error.
func (e *RejectedError) Error() string {
	return fmt.Sprintf("command rejected by stream %q: %v", e.StreamID, e.Err)
}

// Unwrap returns the domain error.
func (e *RejectedError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrRejected) true.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }

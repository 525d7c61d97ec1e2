package eventstore

import (
	"fmt"
	"strconv"
)

type expectKind uint8

const (
	expectAny expectKind = iota
	expectNoStream
	expectStreamExists
	expectExact
)

// ExpectedVersion is what an append expects of its stream. Build one with Any,
// NoStream, StreamExists or Exact.
type ExpectedVersion struct {
	kind    expectKind
	version uint64
}

var (
	// Any accepts the stream in whatever state it is.
	Any = ExpectedVersion{kind: expectAny}
	// NoStream requires that the stream has no events. It equals Exact(0).
	NoStream = ExpectedVersion{kind: expectNoStream}
	// StreamExists requires that the stream has at least one event.
	StreamExists = ExpectedVersion{kind: expectStreamExists}
)

// Exact requires that the stream's version is v, i.e. that it holds exactly v
// events. Exact(0) is NoStream.
func Exact(v uint64) ExpectedVersion {
	if v == 0 {
		return NoStream
	}
	return ExpectedVersion{kind: expectExact, version: v}
}

// Validate reports a malformed ExpectedVersion (one not built by this package's
// constructors).
func (e ExpectedVersion) Validate() error {
	if e.kind > expectExact || (e.kind != expectExact && e.version != 0) {
		return fmt.Errorf("%w: malformed expected version", ErrInvalidEvent)
	}
	return nil
}

// IsAny, IsNoStream and IsStreamExists tell which rule e is; Exact returns
// the version and true for Exact(n) with n > 0.
func (e ExpectedVersion) IsAny() bool          { return e.kind == expectAny }
func (e ExpectedVersion) IsNoStream() bool     { return e.kind == expectNoStream }
func (e ExpectedVersion) IsStreamExists() bool { return e.kind == expectStreamExists }
func (e ExpectedVersion) Exact() (uint64, bool) {
	return e.version, e.kind == expectExact
}

// Allows reports whether a stream at version actual (0: no stream) satisfies e.
func (e ExpectedVersion) Allows(actual uint64) bool {
	switch e.kind {
	case expectNoStream:
		return actual == 0
	case expectStreamExists:
		return actual > 0
	case expectExact:
		return actual == e.version
	default:
		return true
	}
}

// Check returns a *WrongVersionError unless e allows actual.
func (e ExpectedVersion) Check(stream string, actual uint64) error {
	if e.Allows(actual) {
		return nil
	}
	return &WrongVersionError{StreamID: stream, Expected: e, Actual: actual}
}

// String returns "any", "no stream", "stream exists" or the exact version.
func (e ExpectedVersion) String() string {
	switch e.kind {
	case expectNoStream:
		return "no stream"
	case expectStreamExists:
		return "stream exists"
	case expectExact:
		return strconv.FormatUint(e.version, 10)
	default:
		return "any"
	}
}

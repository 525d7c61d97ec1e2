package eventstore

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
)

// Position is a place in the global log. Records are delivered in increasing
// Position order. The zero Position is the start of the log, before any record.
//
// Backends with a single sequence (SQLite, memory) set Commit and Prepare to the
// same value; EventStoreDB sets them to its $all commit and prepare positions.
// Positions compare by Commit, then by Prepare.
type Position struct {
	Commit  uint64
	Prepare uint64
}

// Start is the position before the first record of the log.
var Start = Position{}

// SeqPosition returns the Position of record n of a single-sequence log.
func SeqPosition(n uint64) Position { return Position{Commit: n, Prepare: n} }

// Compare returns -1, 0 or +1 as p is before, equal to or after q.
func (p Position) Compare(q Position) int {
	if c := cmp.Compare(p.Commit, q.Commit); c != 0 {
		return c
	}
	return cmp.Compare(p.Prepare, q.Prepare)
}

// Before reports whether p comes before q in the log.
func (p Position) Before(q Position) bool { return p.Compare(q) < 0 }

// IsZero reports whether p is Start.
func (p Position) IsZero() bool { return p == Start }

// String returns the position as an opaque token: "42" when commit and prepare
// are equal, "commit-prepare" otherwise. ParsePosition reads it back.
func (p Position) String() string {
	if p.Commit == p.Prepare {
		return strconv.FormatUint(p.Commit, 10)
	}
	return strconv.FormatUint(p.Commit, 10) + "-" + strconv.FormatUint(p.Prepare, 10)
}

// MarshalText implements encoding.TextMarshaler with the String token.
func (p Position) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler, reading a String token.
func (p *Position) UnmarshalText(b []byte) error {
	q, err := ParsePosition(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// ParsePosition reads a token made by Position.String. The empty string is Start.
func ParsePosition(s string) (Position, error) {
	if s == "" {
		return Start, nil
	}
	if len(s) > 41 {
		return Position{}, fmt.Errorf("%w: %.48q is too long", ErrInvalidPosition, s)
	}
	c, pr, two := strings.Cut(s, "-")
	commit, err := strconv.ParseUint(c, 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("%w: %q", ErrInvalidPosition, s)
	}
	if !two {
		return SeqPosition(commit), nil
	}
	prepare, err := strconv.ParseUint(pr, 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("%w: %q", ErrInvalidPosition, s)
	}
	return Position{Commit: commit, Prepare: prepare}, nil
}

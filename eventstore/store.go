package eventstore

import (
	"context"
	"iter"
)

// Store is an event log. Implementations are safe for concurrent use.
//
// Iterators returned by a Store stop when the context ends, yielding the
// context's error; they hold no resources once the loop over them ends.
type Store interface {
	// Append writes events to the end of stream if the stream's version is what
	// expected allows, all or nothing. A mismatch returns an error matching
	// ErrWrongVersion. Appending events whose ids are already the stream's events
	// at the expected place returns the original result with Repeated set and
	// writes nothing.
	Append(ctx context.Context, stream string, expected ExpectedVersion, events ...Event) (AppendResult, error)

	// ReadStream yields the events of one stream in version order, starting at
	// version from (1 is the first event). A stream with no events yields a
	// single error matching ErrStreamNotFound.
	ReadStream(ctx context.Context, stream string, from uint64) iter.Seq2[Record, error]

	// ReadAll yields the records of the global log whose position is after
	// `after`, in position order, up to the head at the time of reading.
	ReadAll(ctx context.Context, after Position) iter.Seq2[Record, error]

	// Subscribe yields every record after `after` in position order, exactly once:
	// first the records already in the log, then new ones as they are committed,
	// for as long as ctx lives. It ends with ctx's error, or with the first error
	// the backend cannot recover from.
	Subscribe(ctx context.Context, after Position) iter.Seq2[Record, error]

	// Head returns the position of the last record in the log, or Start when the
	// log is empty.
	Head(ctx context.Context) (Position, error)

	// Close releases the store's resources. Calls after Close return ErrClosed.
	Close() error
}

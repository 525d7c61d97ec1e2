// Package eventstore defines eventline's event log: the [Store] interface that every
// backend implements, the [Event] and [Record] types, expected-version rules, the
// [Position] of a record in the global log, the errors backends return, and a
// [Registry] that maps Go event types to stable type names and JSON.
//
// Backends live in sub-packages, like database/sql drivers:
//
//   - [github.com/eventline/eventline/eventstore/sqlite]: the embedded default,
//     one SQLite file, group commit.
//   - [github.com/eventline/eventline/eventstore/postgres]: PostgreSQL, shared
//     by several processes and hosts.
//   - [github.com/eventline/eventline/eventstore/esdb]: EventStoreDB through its
//     official Go client.
//   - [github.com/eventline/eventline/eventstore/memory]: in-process, for tests
//     and examples.
//
// Every backend passes the contract suite in
// [github.com/eventline/eventline/eventstore/eventstoretest].
//
// # Versions and positions
//
// A stream's version is the number of events in it: the first event of a stream
// has version 1, and version 0 means the stream does not exist. Appends name the
// version they expect ([Any], [NoStream], [StreamExists] or [Exact](n)); a mismatch
// is an error matching [ErrWrongVersion] and carrying a [*WrongVersionError].
//
// Every record also has a Position in the global log. Positions strictly increase
// in commit order: a reader that has seen position P never later sees a record
// below P. A Position holds two numbers so that it can carry an EventStoreDB $all
// position (commit and prepare); single-log backends set both to the same value.
// [Position.String] gives an opaque token for clients, [ParsePosition] reads it
// back.
package eventstore

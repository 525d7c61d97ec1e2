// Package esdb is an [eventstore.Store] on EventStoreDB, through the official Go
// client (github.com/EventStore/EventStore-Client-Go/v4, package esdb, v4.1.0).
// It is the backend for deployments that outgrow one machine: point [Config].URL
// at a node or a three-node cluster and the rest of eventline is unchanged.
//
//	store, err := esdb.Open(ctx, esdb.Config{URL: "esdb://localhost:2113?tls=false"})
//
// The connection string is parsed by the client (TLS, credentials, cluster
// seeds, DNS discovery, node preference); a bad one is an error matching
// [ErrInvalidConfig] that wraps the client's message. Open does not contact the
// server: the first operation does, and reports [eventstore.ErrUnavailable] if
// it cannot.
//
// # Versions and revisions
//
// EventStoreDB numbers a stream's events from revision 0; eventline numbers
// them from version 1. So a record's Version is its revision + 1, and the
// expected versions map as: Any → Any{}, NoStream (= Exact(0)) → NoStream{},
// StreamExists → StreamExists{}, Exact(n) → Revision(n-1). A refused append is
// a *eventstore.WrongVersionError whose Actual is the server's current
// revision + 1 (0 for no stream).
//
// # Positions
//
// A record's Position is its $all position: Commit and Prepare are the
// server's commit and prepare positions, unchanged, and compare the way the
// server orders $all.
//
// An append's result must satisfy "a reader that has reached Position has seen
// every event of the append". The server (EventStore.Core, request manager
// WriteEvents) answers a successful append with CommitPosition =
// PreparePosition = the log position of the append's last prepare record. A
// gRPC append is an implicit transaction: each event's prepare record is
// committed in place, and a read of $all gives the event the position (P, P),
// P being the log position of its own prepare. So the WriteResult's pair is
// the $all position of the append's last event, and AppendResult.Position is
// taken from it as is. An idempotent repeat is answered with the position of
// the original last event; when the server gives no position (0/0: the
// repeated events are not indexed yet, or an old server), the last event is
// read back.
// Events written long ago by explicit transactions of the old TCP API carry
// distinct commit and prepare positions; they are mapped unchanged too.
//
// # Events, metadata and content type
//
// Event ids are passed through, so EventStoreDB's own idempotent append
// applies: repeating an append with the same ids and expectation succeeds
// without writing. (Its idempotence is per stream and, with Any, bounded by a
// server cache; eventline's ErrDuplicateEvent is never returned by this
// backend.)
//
// The server answers a repeat exactly as the write it repeats, so an append
// whose every event id is the caller's (only such an append can repeat one)
// reads its events back, one extra read per such append: when the stream holds
// other types, data or metadata under those ids, the result has Repeated set
// and the caller knows its own events were not written. A repeat of identical
// events cannot be told from the write and reports Repeated false
// (eventstoretest.IdenticalRepeatsUnreported); what the stream holds is then
// exactly what the caller gave. An event's Metadata is stored as the event's metadata bytes, as the
// JSON object of eventstore.Metadata's tags:
//
//	{"correlation_id":"…","causation_id":"…","headers":{"k":"v"}}
//
// with empty fields omitted, and no bytes at all for empty Metadata. Metadata
// that is not that shape (events written by other tools) reads as empty.
// Data that is valid JSON is stored with the JSON content type, so server-side
// projections and the web UI can read it; anything else, including empty data,
// as binary. Event types starting with '$' are refused with
// eventstore.ErrInvalidEvent: the server reserves them.
//
// # System events
//
// EventStoreDB writes its own events to $all ('$'-prefixed types and streams).
// Subscribe filters them out on the server with the client's
// ExcludeSystemEventsFilter. The client's read of $all takes no filter (v4.1.0
// always asks for none), so ReadAll and Head skip them in Go; tombstones
// ('$streamDeleted') and links ('$>') are skipped the same way.
//
// # Errors
//
//   - stream not found (also: a stream deleted softly) → eventstore.ErrStreamNotFound
//   - stream deleted (tombstoned) → eventstore.ErrStreamDeleted
//   - server unavailable, connection refused, deadline exceeded, not leader,
//     discovery failed → eventstore.ErrUnavailable
//   - after Close → eventstore.ErrClosed
//
// Each wraps the client's error and names the stream or position involved.
//
// # Subscriptions
//
// Subscribe runs a catch-up subscription to $all and reopens it when it drops,
// with jittered exponential back-off, after the last record it handed over;
// see Store.Subscribe.
//
// # Connection
//
// The client connects on its first call and, in v4.1.0, its connection loop
// stops for good when discovery fails, while a call that then reports
// "unavailable" would block for ever sending to that loop. The store therefore
// connects with a probe whose wait is bounded by the caller's context,
// replaces a client whose probe failed, and after an "unavailable" error lets
// no operation into the client until those inside have left and the
// connection has been probed again.
//
// # StreamPrefix
//
// Config.StreamPrefix namespaces a store inside a shared server: stream ids
// get the prefix on the server, and ReadAll, Subscribe (with a server-side
// stream-prefix filter instead) and Head see only the prefixed streams.
//
// # Verification
//
// The contract suite (eventstore/eventstoretest) runs when EVENTLINE_ESDB_URL
// names a server; docs/esdb.md says how to start one and what was verified
// where.
package esdb

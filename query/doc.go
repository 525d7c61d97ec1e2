// Package query is the read side of eventline: it reads projections' read
// models in Redis and never touches the event store, so query services deploy
// without the write side (it imports only the eventstore core, for Position,
// and go-redis).
//
// # Versions
//
// A projection's keys carry its name as a hash tag and its build: the schema
// version and, for a version rebuilt without a version bump, a generation:
// "{el:carts}:v3:cart:42" (generation 0) or "{el:carts}:v3g1:cart:42"
// (generation 1, see Build). The key {el:<name>}:active names the live build
// ("3", "3g1"). Resolve reads it and returns a View bound to that build, so
// that every read of one request sees one build even if a rebuild switches
// builds meanwhile; View.Key and View.Checkpoint follow the generation, so
// readers never need to know about generations. A projection whose first version has not caught up with the log
// has no active version: Resolve returns ErrNotReady rather than a half-built
// model.
//
// This package owns the key layout (BuildKey, ActiveKey, BuildCheckpointKey,
// ...; Key, VersionPrefix and CheckpointKey name generation 0): the
// projection package writes through it, so writers and readers cannot drift
// apart.
//
// # Read your writes
//
// A command returns the position it committed. WaitFor(ctx, rdb, name,
// position) returns once the active version's checkpoint has reached it,
// bounded by ctx; with the zero position it never waits. It polls the
// checkpoint hash with a growing pause (0.5 ms doubling to 20 ms): a GET of a
// small hash costs Redis little, needs no connection per waiter (pub/sub
// would), and cannot miss a notification.
package query

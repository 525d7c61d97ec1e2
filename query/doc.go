// Package query is the read side of eventline: it reads projections' read
// models in Redis and never touches the event store, so query services deploy
// without the write side (it imports only the eventstore core, for
// [eventstore.Position], and go-redis).
//
// # Versions
//
// A projection's keys carry its name as a hash tag and its build: the schema
// version and, for a version rebuilt without a version bump, a generation:
// "{el:carts}:v3:cart:42" (generation 0) or "{el:carts}:v3g1:cart:42"
// (generation 1, see [Build]). The key {el:<name>}:active names the live build
// ("3", "3g1"). [Resolve] reads it and returns a [View] bound to that build, so
// that every read of one request sees one build even if a rebuild switches
// builds meanwhile; [View.Key] and [View.Checkpoint] follow the generation, so
// readers never need to know about generations. A projection whose first version has not caught up with the log
// has no active version: Resolve returns [ErrNotReady] rather than a half-built
// model.
//
// This package owns the key layout ([Key], [Prefix], [CheckpointKey], [ActiveKey],
// each of one Build; [Version](n) names generation 0 of version n): the
// projection package writes through it, so writers and readers cannot drift
// apart.
//
// # Partitions
//
// A projection may be split into partitions (projection.Partitioned), each
// with its own hash tag {el:<name>:p<i>} so that each may live on another node
// of a Redis Cluster; the layout is in keys.go. [Resolve] learns the active
// build's partition count from Redis ([PartitionsKey]) in the same round trip
// as the build, so readers need no code of the projection: [View.KeyFor]
// routes a key to its partition by the partition key of the records that write
// it ([PartitionOf]: FNV-1a modulo the count, part of the format),
// [View.PartitionKeys] lists one key in every partition for a scatter-gather
// listing, [View.Checkpoints] reads every partition's checkpoint, and
// [WaitForKey] and [Watcher.WaitForKey] wait only for the partition holding a
// key ([WaitFor] waits for all of them).
//
// # Read your writes
//
// A command returns the position it committed. [WaitFor](ctx, rdb, name,
// position) returns once the active version's checkpoint has reached it,
// bounded by ctx, waiting as well for a projection with no active build yet
// (its first build is catching up); with the zero position it never waits. It polls the
// checkpoint hash with a growing pause (0.5 ms doubling to 20 ms), which
// suits a tool or a test.
//
// A query service uses a [Watcher] instead: runners publish each commit on
// [CommitChannel] from inside the transaction that writes the checkpoint (and
// at each switch of the active build), and
// the Watcher, one pub/sub subscription per process, wakes the waiters a
// commit satisfies, re-checking the checkpoint once per notification that
// matters rather than once per waiter; it polls only as a slow fallback
// ([WatcherConfig].FallbackPoll) and caps the waiters (MaxWaiters,
// [ErrTooManyWaiters]). Its Resolve caches the active build for a bounded
// time (WatcherConfig.ActiveTTL) that stays well inside the runners'
// RetireDelay, so a blue/green switch never leaves a query reading a
// removed build.
package query

// Package projection keeps read models in Redis up to date with the event
// log, exactly once in effect, and says how stale they are.
//
// A [Projection] is user code: a name ([a-z0-9_-]), a schema version (≥ 1), the
// event types it handles, and Apply, which turns one record into Redis writes
// queued on a [Tx]. [Define] builds one from a function; [Router] dispatches typed,
// decoded events ([eventstore.Registry], upcasters included) to handlers
// registered with [Handle]; [Router.Projection] makes it a Projection in one
// call.
//
// A [Runner] ([NewRunner]) subscribes to the log ([eventstore.Store]) after the projection's checkpoint, groups
// records into batches (at most [Config].BatchSize records; the first record
// waits at most Config.FlushInterval for company) and commits each batch.
// Several runners in one process can share one reading of the log: give them
// the same [eventstore.SharedLog] as Config.Store. The runner reads the log
// ahead of the batch it applies; a [Router]'s events are decoded there, as
// they are read, so that decoding overlaps the batch's round trip to Redis.
//
// # One batch, one transaction, fenced
//
// A batch is committed as
//
//	WATCH lease, active; HMGET lease + TIME (must be our holding, unexpired);
//	MULTI; <the batch's writes>;
//	HSET checkpoint ...; EXEC
//
// The writes and the new checkpoint land together or not at all, so a crash at
// any moment neither loses nor doubles a record: the next runner resumes from
// the checkpoint in Redis, the only truth about what was applied. The lease
// check cannot be done inside MULTI (a failing command inside MULTI does not
// abort the others); WATCH makes EXEC fail if any other client touched the
// lease key after our check, which is exactly what a takeover does. A runner
// that lost its lease therefore cannot write, even if it was paused between
// its check and its EXEC (TestLeaseTakeoverAndFencing steals the lease at
// that very moment). The same check reads the checkpoint and refuses a
// batch unless it is the one the session last read or wrote: Redis that
// lost writes without an error (a replica promoted without the last
// batches, reached after a network partition with the lease still valid)
// makes the session start again from the checkpoint Redis has
// (TestClusterFenceRefusesRolledBackCheckpoint). Refused batches are
// counted in the eventline_projection_fenced_batches_total metric.
//
// Renewing the lease also touches the key and would abort our own
// WATCH, so renewals happen on the runner's goroutine between batches, never
// during one. One Lua script per batch was the alternative; it would make
// projections write through a command encoding of ours instead of go-redis'
// Pipeliner, for no gain in safety. Redis has no rollback either way: if
// Redis refuses a command inside EXEC (WRONGTYPE: a projection bug), the rest
// of the batch and its checkpoint did land, so the runner stops with
// [ErrCommandFailed] instead of carrying on with a possibly wrong model.
//
// # Reading the model while writing it
//
// Writes go to [Tx.Pipe] and are sent at EXEC. Reads that a projection needs
// (to update a JSON document, say) go through [Tx.Read] at once. Because only the
// lease holder writes a projection's keys, such a read sees every committed
// batch; it does not see the writes queued earlier in the same batch, so a
// read-modify-write keeps its result in [Tx.Memo], the batch's overlay of its
// own pending writes, for the records that follow (the tests' "add" handler
// does this). Prefer Redis' atomic updates (HINCRBY, ZINCRBY, SADD, ...) where
// they fit: they need no read at all and keep batches one round trip.
//
// Apply may run more than once for a record (a batch is retried after an
// error); only the attempt that commits counts, so Apply must not act outside
// its Tx.
//
// # Keys, versions, activation
//
// Every key of projection <name> carries the hash tag {el:<name>}, so that
// the model, checkpoint, lease and status of one projection, across its
// versions, share one Redis Cluster slot and one transaction can cover them.
// The layout is defined in package query (so that the read side, which must
// not import this package, agrees by construction):
//
//	{el:<name>}:active             live build: "<n>" or "<n>g<g>"
//	{el:<name>}:v<b>:checkpoint    hash: position token, commit, prepare, recorded_at, updated_at
//	{el:<name>}:v<b>:lease         hash of the writing runner's holding (internal/lease: owner, fencing token, expiry)
//	{el:<name>}:v<b>:status        hash written by the lease holder (fenced by the lease)
//	{el:<name>}:v<b>:deadletter    list of DeadLetterEntry JSON
//	{el:<name>}:v<b>:retry         dead letters to apply again ([RetryDeadLetter])
//	{el:<name>}:v<b>:<parts...>    the model (Tx.Key)
//
// <b> is a build ([query.Build]): the schema version n for its generation 0
// ("v3:", the layout from before generations), "<n>g<g>" for generation g ≥ 1
// of it ("v3g1:"), made by a forced rebuild (below). Checkpoint and lease are
// per build: version n+1, or generation g+1 of version n, can be built beside
// the live build by its own runners. Until a version is active, queries get
// [query.ErrNotReady] instead of a half-built model.
//
// # Blue/green rebuilds
//
// Changing what Apply writes means bumping Version. A runner of the new
// version (Config.Activation ActivateIfNewer, the default) builds it from the
// start of the log beside the live version, which keeps serving and being
// updated by its own runners. Once the new version has reached the head seen
// when it took its lease, it switches {el:<name>}:active in one script that
// checks, atomically, that the active version is still the one it replaces,
// that the switcher still holds the new version's lease, and that the new
// checkpoint has reached both that head and the old version's checkpoint (so a
// client that read its own write from the old version finds it in the new
// one). Queries resolve either the complete old version or the complete new
// one. The same script adds the old version to {el:<name>}:retired.
//
// Every batch WATCHes the active-version key besides the lease and checks it
// with the lease (one round trip): once a newer version is active, no batch of an
// older one can land, and its runners stop with [ErrSuperseded] at their next
// batch or lease renewal (an older runner started later stops at once).
// After Config.RetireDelay, the lease holder of the new version removes the
// old version's keys: it waits until nobody holds the old lease, then SCANs
// the version prefix RemoveBatch keys at a time and UNLINKs them, so Redis
// never blocks. A removal cut short by a crash is resumed by the next lease
// holder of the active version (the retired set says what is left).
//
// [Rebuild] does the same from a tool (the replay command of package
// projection/cli): it runs a runner of the new version, follows its progress
// and returns once the old version is gone. Cancelled before the switch, it
// leaves the live version untouched and Discards the partial one; crashed, it
// resumes from the new version's checkpoint when run again, or starts over
// with [RebuildOptions].Restart (for code changed since the crash). With
// ActivateIfNone a runner whose version is newer than the active one refuses
// to start (ErrNewVersion) and the operator rebuilds explicitly; with
// ActivateNever the caller switches with [Activate]. A version older than the
// active one never writes (ErrSuperseded). Rebuild of the version that is
// already active does nothing, unless RebuildOptions.Force asks for a new
// generation of it (next section).
//
// # Rebuilding the active version: generations
//
// A version cannot be rebuilt blue/green into its own keys, yet a model can
// be wrong while its code's Version is right: keys deleted or damaged by
// hand, a bug fixed without a version bump. Rebuild with RebuildOptions.Force
// (replay --force) then builds generation g+1 of the active version n beside
// the live generation g, exactly as a new version is built: same runner, same
// switch script (the active key goes from "<n>" or "<n>g<g>" to "<n>g<g+1>" only once
// the new generation has passed the head and the live checkpoint), same
// removal of the replaced build. Nothing else changes for readers:
// [query.Resolve] returns a View carrying the generation and View.Key and
// View.Checkpoint follow it.
//
// A runner is built from code, which knows the version but not the
// generation, so a runner of version n writes whatever generation of n is
// active (generation 0 while n is not active yet). When a forced rebuild
// switches, the runner of generation g is superseded like the runner of an
// old version (its next batch or lease renewal sees the newer build and
// stops writing g), but since its version is the active version, Run does not
// return: it releases g's lease, so g's removal can start, and takes g+1's
// lease as soon as the rebuild's own runner lets it go (Rebuild returns once
// g is removed). Runners of an older version still stop with ErrSuperseded.
// Only Rebuild's runner is pinned to one build.
//
// A forced rebuild that crashed before its switch is resumed from its
// checkpoint by the next forced Rebuild (the versions set still
// lists its generation); RebuildOptions.Restart (or [Discard]) removes it
// instead, for a rebuild that must start over. A projector serving
// [RequestRebuild] requests ([ServeRebuildRequests]) claims each with a lease it
// renews while the rebuild runs; the rebuild stops as soon as the projector
// can no longer prove it holds the claim.
//
// # Leases
//
// Any number of runners of one version may run; the one holding the lease
// (the one Redis lease of eventline, internal/lease: owner Config.ID, a
// fencing token that grows with every acquisition, an expiry on the server's
// clock) writes, the others retry every third of Config.LeaseTTL and as the
// lease they wait for expires, so a dead holder is replaced within about
// LeaseTTL. A holder also tracks on its own
// clock until when it surely holds the lease, and stops writing once it
// cannot prove it (renewals failing). Run releases the lease when it
// returns. A restarted process that reuses its ID reclaims its own lease at
// once, with a new token.
//
// # Failures
//
// Redis or the store unreachable: the runner logs once per change of state,
// backs off (Config.MinBackoff doubling to MaxBackoff, with jitter), and starts over from
// the checkpoint in Redis; records it had in flight are simply read again. A
// record the projection cannot apply (decode or handler error) is retried
// Config.MaxAttempts times, then by Config.OnPoison either the runner stops
// after committing the records before it (Stop, the default: Run returns
// [ErrStuck], Status shows StuckAt and Error) or the record goes to the
// dead-letter list, atomically with the checkpoint, and the runner goes on
// (DeadLetter). Records of types the projection does not handle are skipped
// and counted. Once the cause is fixed, RetryDeadLetter has the build's lease
// holder apply a dead letter again, exactly once, between its batches.
//
// A build with model keys but no checkpoint (the checkpoint was evicted or
// deleted while the model stayed) is never applied from the start of the log,
// which would count every record twice: the runner stops with
// [ErrCheckpointLost], whose message names the projection and the fix (a forced
// rebuild into a fresh generation for the active build, a restarted rebuild
// otherwise). The read side's Redis must not evict keys; [CheckEvictionPolicy]
// reads its maxmemory-policy, and Run logs a warning when it may evict.
//
// # Status and metrics
//
// [Runner.Status] is this runner's view; [ReadStatus] reads the same from Redis
// alone (for the CLI): checkpoint, head (refreshed every Config.StatusEvery),
// lag in events (head − checkpoint for single-sequence logs; -1 for
// EventStoreDB, whose positions are byte offsets) and in seconds (age of the
// last applied record while behind, 0 when caught up), state, lease holder,
// dead-letter count. Only the lease holder writes a build's status hash, in a
// script that checks the lease as a batch does; a runner stopping without
// having applied anything to a build that has nothing removes the build's
// status instead of leaving a stopped entry behind. Metrics (eventline_projection_*) are registered on
// Config.Registerer, never globally.
//
// # Partitions
//
// A projection that implements [Partitioner] (most simply through
// [Partitioned]) is split into N partitions by a partition key derived from
// each record ([StreamPartitionKey], the stream id, by default); record and
// key belong to partition query.PartitionOf(key, N). Each partition of a
// build has its own hash tag, checkpoint, lease, status and dead letters
// (the layout is in package query), so a partition can live on any node of a
// Redis Cluster; N = 1 is the unpartitioned layout, byte for byte. [Tx.Key]
// writes in the partition applying the record.
//
// The Runner of a partitioned projection shares its partitions with the
// other runners of the projection like a consumer group: it heartbeats in
// the version's members set, takes the partitions assigned to it (partition
// p to the member at index p mod M of the M live members, sorted by
// Config.ID: at most ceil(N/M) each), and runs, for each, the session
// described above, fenced by that partition's lease. When runners join, a
// runner stops the partitions no longer assigned to it after their current
// batch and releases their leases; when one dies, its membership and leases
// expire within LeaseTTL and the others take its partitions. The lease
// guarantees that no two runners ever apply one partition. Each partition's
// checkpoint moves over every record of the log, its own or not, so a reader
// waiting on one partition is never held up by the others. A partitioned
// build becomes active once every partition has caught up (a compare-and-set
// of the active key after reading the partitions' checkpoints, which only
// grow; see docs/architecture.md); [Rebuild] refuses partitioned projections
// for now: deploy runners of a new version instead. [ReadStatus] reports each
// partition in Status.Parts, with the total in the Status itself.
package projection

package projection

import "errors"

var (
	// ErrInvalidConfig means a Config or Projection cannot be used as given.
	ErrInvalidConfig = errors.New("projection: invalid config")
	// ErrFenced means a batch was refused because the runner no longer held the
	// projection's lease (another runner took over), or because the checkpoint
	// in Redis was not the one the runner last wrote (Redis lost writes in a
	// failover). Nothing of the batch landed.
	ErrFenced = errors.New("projection: lease lost, batch refused")
	// ErrStuck means the runner stopped at a record the projection could not
	// apply (policy Stop). The error names the record's position; Status shows
	// it too. Records before it are applied and checkpointed.
	ErrStuck = errors.New("projection: stopped at a record that cannot be applied")
	// ErrCommandFailed means Redis refused a command of a committed batch
	// (e.g. WRONGTYPE). Redis has no rollback: the other commands of the batch
	// and its checkpoint did land, so the model may be wrong and the runner
	// stops rather than go on. This is a bug in the projection.
	ErrCommandFailed = errors.New("projection: redis refused a command of a batch")
	// ErrBehind means Activate refused to switch to a version whose checkpoint
	// has not reached the position asked for.
	ErrBehind = errors.New("projection: version has not caught up")
)

var (
	// ErrSuperseded means a newer version of the projection is active: this
	// version must not write any more. A runner of it stops with this error
	// (at start, or as soon as it notices a switch), and a rebuild of it is
	// refused rather than written over the newer model.
	ErrSuperseded = errors.New("projection: a newer version is active")
	// ErrNewVersion means a runner with Activation ActivateIfNone refused to
	// start because its version is newer than the active one: the operator
	// chose to rebuild explicitly (the replay command, or Rebuild).
	ErrNewVersion = errors.New("projection: version is newer than the active version")
	// ErrBusy means Discard left a version in place because another runner
	// holds its lease (it is being built by someone else).
	ErrBusy = errors.New("projection: version is being written by another runner")
)

// ErrActive means Discard refused to remove the active version.
var ErrActive = errors.New("projection: version is active")

// ErrCheckpointLost means a runner found a build with model keys but no
// checkpoint (evicted, deleted, lost in a failover) and refused to apply the
// log from its start over them, which would apply every record twice. The
// error names the projection, the build and the fix: rebuild it (a fresh
// generation, blue/green) or start the build over.
var ErrCheckpointLost = errors.New("projection: checkpoint lost while the model remains")

// ErrEvictingPolicy means the Redis server of the read models may evict keys
// (its maxmemory-policy is not noeviction): an evicted model key is lost
// data, an evicted checkpoint stops the projection (ErrCheckpointLost).
var ErrEvictingPolicy = errors.New("projection: redis may evict read model keys")

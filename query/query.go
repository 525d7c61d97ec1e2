package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/redis/go-redis/v9"
)

var (
	// ErrNotReady means a projection has no active version yet: its first
	// version has not caught up with the log, so there is no model to read.
	ErrNotReady = errors.New("query: projection not ready")
	// ErrNotFound means a read model entry does not exist.
	ErrNotFound = errors.New("query: not found")
	// ErrInvalidName means a projection name is empty, too long or uses
	// characters outside [a-z0-9_-].
	ErrInvalidName = errors.New("query: invalid projection name")
)

// View is one build of a projection's read model, as resolved at one moment.
// Keep a View for the reads of one request: all of them then see the same
// build even if a rebuild switches the active build meanwhile.
type View struct {
	rdb redis.Cmdable
	// Name is the projection's name.
	Name string
	// Version is the schema version the View reads, and Generation the
	// generation of that version (0 unless the version was force-rebuilt).
	Version    int
	Generation int
	// Partitions is the number of partitions of the build, 1 when it is not
	// partitioned (query.PartitionsKey). Entries of a partitioned build are
	// read with KeyFor, which routes a key to its partition.
	Partitions int
}

// Resolve returns a View of the active version of projection name. A
// projection without an active version gives an error matching ErrNotReady.
// Resolve never waits.
func Resolve(ctx context.Context, rdb redis.Cmdable, name string) (*View, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	// Both keys are in the projection's hash tag: one round trip, on one
	// node of a cluster.
	pipe := rdb.Pipeline()
	active := pipe.Get(ctx, ActiveKey(name))
	parts := pipe.HGetAll(ctx, PartitionsKey(name))
	_, err := pipe.Exec(ctx)
	s, aerr := active.Result()
	if errors.Is(aerr, redis.Nil) {
		return nil, fmt.Errorf("%w: projection %q has no active version", ErrNotReady, name)
	}
	if err != nil {
		return nil, fmt.Errorf("query: resolve projection %q: %w", name, err)
	}
	b, err := ParseBuild(s)
	if err != nil {
		return nil, fmt.Errorf("query: projection %q: active build: %w", name, err)
	}
	n := 1
	if ns, ok := parts.Val()[s]; ok {
		if n, err = strconv.Atoi(ns); err != nil || n < 1 {
			return nil, fmt.Errorf("query: projection %q: build %s: partition count %q is not a positive integer", name, s, ns)
		}
	}
	return &View{rdb: rdb, Name: name, Version: b.Version, Generation: b.Generation, Partitions: n}, nil
}

// partitions returns the View's partition count, 1 for a View made without one.
func (v *View) partitions() int { return max(1, v.Partitions) }

// PartitionOf returns the partition holding the entries of partition key
// key (see query.PartitionOf): 0 for an unpartitioned build.
func (v *View) PartitionOf(key string) Partition {
	n := v.partitions()
	if n < 2 {
		return Partition{}
	}
	return Partition{Index: PartitionOf(key, n), Count: n}
}

// KeyFor returns the key of a read model entry of the View's build whose
// partition key is partitionKey (the stream id of the records that write it,
// unless the projection derives another one): the key in the partition that
// holds it, made of parts joined with ':'. On an unpartitioned build it is
// Key(parts...).
func (v *View) KeyFor(partitionKey string, parts ...string) string {
	return PartitionKey(v.Name, v.Build(), v.PartitionOf(partitionKey), parts...)
}

// PartitionKeys returns the key made of parts in every partition of the
// View's build, in partition order: what a listing scatters its reads over
// (one key per partition, e.g. a per-partition index set), before gathering
// the replies. On an unpartitioned build it is [Key(parts...)].
func (v *View) PartitionKeys(parts ...string) []string {
	n := v.partitions()
	if n < 2 {
		return []string{v.Key(parts...)}
	}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = PartitionKey(v.Name, v.Build(), Partition{Index: i, Count: n}, parts...)
	}
	return keys
}

// ViewOf returns a View of build b of projection name, split into
// partitions partitions (1 or less: unpartitioned), without reading Redis:
// for tools that read a build that is not, or not yet, the active one.
func ViewOf(rdb redis.Cmdable, name string, b Build, partitions int) *View {
	return &View{rdb: rdb, Name: name, Version: b.Version, Generation: b.Generation, Partitions: max(1, partitions)}
}

// Build returns the build the View reads.
func (v *View) Build() Build { return Build{Version: v.Version, Generation: v.Generation} }

// Key returns the key of a read model entry of the View's build.
func (v *View) Key(parts ...string) string { return Key(v.Name, v.Build(), parts...) }

// Checkpoint returns the position of the last record applied to the View's
// build (Start when none). On a partitioned build it is the lowest
// checkpoint of its partitions: every partition has applied the log up to
// it, so every entry reflects it.
func (v *View) Checkpoint(ctx context.Context) (eventstore.Position, error) {
	if v.partitions() < 2 {
		return ReadCheckpoint(ctx, v.rdb, v.Name, v.Build())
	}
	cps, err := v.Checkpoints(ctx)
	if err != nil {
		return eventstore.Position{}, err
	}
	low := cps[0]
	for _, cp := range cps[1:] {
		if cp.Before(low) {
			low = cp
		}
	}
	return low, nil
}

// Checkpoints returns the checkpoint of every partition of the View's build,
// in partition order, read in one pipeline (one round trip per node of a
// cluster). An unpartitioned build has one.
func (v *View) Checkpoints(ctx context.Context) ([]eventstore.Position, error) {
	n := v.partitions()
	if n < 2 {
		cp, err := ReadCheckpoint(ctx, v.rdb, v.Name, v.Build())
		return []eventstore.Position{cp}, err
	}
	pipe := v.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, n)
	for i := range cmds {
		cmds[i] = pipe.HGet(ctx, PartitionCheckpointKey(v.Name, v.Build(), Partition{Index: i, Count: n}), FieldPosition)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("query: read checkpoints of %s v%s: %w", v.Name, v.Build(), err)
	}
	cps := make([]eventstore.Position, n)
	for i, c := range cmds {
		s, err := c.Result()
		if errors.Is(err, redis.Nil) {
			continue // Start
		}
		if cps[i], err = eventstore.ParsePosition(s); err != nil {
			return nil, fmt.Errorf("query: checkpoint of %s v%s partition %d: %w", v.Name, v.Build(), i, err)
		}
	}
	return cps, nil
}

// PartitionCheckpoint returns the checkpoint of partition p of the View's
// build; p is ignored on an unpartitioned build.
func (v *View) PartitionCheckpoint(ctx context.Context, p Partition) (eventstore.Position, error) {
	if v.partitions() < 2 {
		return ReadCheckpoint(ctx, v.rdb, v.Name, v.Build())
	}
	key := PartitionCheckpointKey(v.Name, v.Build(), p)
	s, err := v.rdb.HGet(ctx, key, FieldPosition).Result()
	if errors.Is(err, redis.Nil) {
		return eventstore.Start, nil
	}
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("query: read checkpoint %s: %w", key, err)
	}
	return eventstore.ParsePosition(s)
}

// checkpointFor returns the checkpoint a waiter for partition key key waits
// on: its partition's, or the lowest of all with key "" (see WaitForKey).
func (v *View) checkpointFor(ctx context.Context, key string, all []eventstore.Position) (eventstore.Position, error) {
	if all == nil {
		var err error
		if key != "" && v.partitions() > 1 {
			return v.PartitionCheckpoint(ctx, v.PartitionOf(key))
		}
		if all, err = v.Checkpoints(ctx); err != nil {
			return eventstore.Position{}, err
		}
	}
	if key != "" && len(all) > 1 {
		return all[v.PartitionOf(key).Index], nil
	}
	low := all[0]
	for _, cp := range all[1:] {
		if cp.Before(low) {
			low = cp
		}
	}
	return low, nil
}

// GetJSON reads the string key made of parts and decodes it as JSON into dst.
// A missing key gives an error matching ErrNotFound.
func (v *View) GetJSON(ctx context.Context, dst any, parts ...string) error {
	key := v.Key(parts...)
	b, err := v.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err != nil {
		return fmt.Errorf("query: GET %s: %w", key, err)
	}
	if err := json.Unmarshal(b, dst); err != nil {
		return fmt.Errorf("query: decode %s: %w", key, err)
	}
	return nil
}

// HGetAll reads the hash key made of parts into dst, a pointer to a struct
// whose fields carry `redis:"field"` tags (go-redis' Scan rules). A missing
// key gives an error matching ErrNotFound.
func (v *View) HGetAll(ctx context.Context, dst any, parts ...string) error {
	key := v.Key(parts...)
	res := v.rdb.HGetAll(ctx, key)
	if err := res.Err(); err != nil {
		return fmt.Errorf("query: HGETALL %s: %w", key, err)
	}
	if len(res.Val()) == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err := res.Scan(dst); err != nil {
		return fmt.Errorf("query: decode %s: %w", key, err)
	}
	return nil
}

// ReadCheckpoint returns the checkpoint of build b of a projection, Start
// when the build has applied nothing. View.Checkpoint reads the checkpoint of
// the build the View resolved.
func ReadCheckpoint(ctx context.Context, rdb redis.Cmdable, name string, b Build) (eventstore.Position, error) {
	key := CheckpointKey(name, b)
	s, err := rdb.HGet(ctx, key, FieldPosition).Result()
	if errors.Is(err, redis.Nil) {
		return eventstore.Start, nil
	}
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("query: read checkpoint %s: %w", key, err)
	}
	return eventstore.ParsePosition(s)
}

// Polling bounds of WaitFor. The first re-check comes quickly because a
// runner usually commits within a few milliseconds; the cap bounds the load
// many waiters put on Redis.
const (
	waitMinBackoff = 500 * time.Microsecond
	waitMaxBackoff = 20 * time.Millisecond
)

// WaitFor returns a View of the active build of projection name once that
// build's checkpoint has reached position, so that a client reading through
// it sees its own writes: pass the position a command returned. A projection
// with no active build yet (its first build is still catching up) is waited
// for like a checkpoint behind position: WaitFor returns once a build is
// active and has reached position. It re-checks with a growing pause (0.5
// ms up to 20 ms), re-resolving the active build each time, and gives up
// with ctx's error; if no build was active by then the error also matches
// ErrNotReady.
//
// A zero position never waits: WaitFor is then Resolve, and a projection
// with no active build gives ErrNotReady at once.
func WaitFor(ctx context.Context, rdb redis.Cmdable, name string, position eventstore.Position) (*View, error) {
	return WaitForKey(ctx, rdb, name, "", position)
}

// WaitForKey is WaitFor for the reads of the entries of one partition key
// (View.KeyFor): on a partitioned build it waits only for the partition that
// holds key. With key "" it is WaitFor, which waits for every partition.
func WaitForKey(ctx context.Context, rdb redis.Cmdable, name, key string, position eventstore.Position) (*View, error) {
	pause := waitMinBackoff
	var timer *time.Timer
	var last *View // the View of the last look, nil while no build is active
	var cp eventstore.Position
	for {
		v, err := Resolve(ctx, rdb, name)
		if position.IsZero() {
			return v, err
		}
		if err == nil {
			cp, err = v.checkpointFor(ctx, key, nil)
		}
		switch {
		case err == nil && !cp.Before(position):
			return v, nil
		case err == nil, errors.Is(err, ErrNotReady):
			last = v
		case ctx.Err() != nil: // the deadline struck during the look
			return nil, waitError(name, position, last, cp, ctx.Err())
		default:
			return nil, err
		}
		if timer == nil {
			timer = time.NewTimer(pause)
			defer timer.Stop()
		} else {
			timer.Reset(pause)
		}
		select {
		case <-ctx.Done():
			return nil, waitError(name, position, last, cp, ctx.Err())
		case <-timer.C:
		}
		pause = min(2*pause, waitMaxBackoff)
	}
}

// waitError is the error of a wait that ctx ended: with v nil no build was
// active, and the error matches ErrNotReady too.
func waitError(name string, position eventstore.Position, v *View, cp eventstore.Position, err error) error {
	if v == nil {
		return fmt.Errorf("query: wait for projection %q to reach %s: %w: no active build yet: %w", name, position, ErrNotReady, err)
	}
	return fmt.Errorf("query: wait for projection %q to reach %s (at %s): %w", name, position, cp, err)
}

package projection

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

// State is what a runner is doing.
type State string

// States of a runner.
const (
	// StateStarting: the runner has not tried to take the lease yet.
	StateStarting State = "starting"
	// StateStandby: another runner holds the lease; this one waits to take over.
	StateStandby State = "standby"
	// StateCatchingUp: the lease holder is applying records already in the log
	// when it (re)started.
	StateCatchingUp State = "catching_up"
	// StateRunning: the lease holder has caught up and applies new records as
	// they come.
	StateRunning State = "running"
	// StateRetrying: Redis or the store failed; the runner backs off and
	// resumes from the checkpoint.
	StateRetrying State = "retrying"
	// StateStopped: the runner is not running. With a non-empty Status.Error it
	// stopped on an error (a stuck record, a refused command).
	StateStopped State = "stopped"
)

var allStates = []State{StateStarting, StateStandby, StateCatchingUp, StateRunning, StateRetrying, StateStopped}

// Status describes one build (version and generation) of a projection.
type Status struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
	// Generation is the generation of Version this status is about: 0 until
	// the version is rebuilt without a version bump (RebuildOptions.Force).
	Generation int `json:"generation"`
	// ActiveVersion and ActiveGeneration are the projection's live build
	// (ActiveVersion 0: none yet); Active says whether it is this one.
	ActiveVersion    int   `json:"active_version"`
	ActiveGeneration int   `json:"active_generation"`
	Active           bool  `json:"active"`
	State            State `json:"state"`
	// Checkpoint is the position of the last record applied; Head the position
	// of the last record in the log, as of HeadAt.
	Checkpoint eventstore.Position `json:"checkpoint"`
	Head       eventstore.Position `json:"head"`
	HeadAt     time.Time           `json:"head_at,omitzero"`
	// LagEvents is Head.Commit − Checkpoint.Commit when both are positions of
	// a single-sequence log (SQLite, memory); -1 otherwise (EventStoreDB
	// positions are byte offsets, not counts).
	LagEvents int64 `json:"lag_events"`
	// LagSeconds is how old the last applied record is while the checkpoint is
	// behind the head, 0 when caught up, -1 when nothing was applied yet.
	LagSeconds float64 `json:"lag_seconds"`
	// RecordedAt is when the store committed the last applied record.
	RecordedAt time.Time `json:"recorded_at,omitzero"`
	// Holder is the lease token of the runner writing this version ("" none).
	// Runner is the token of the runner reporting (Runner.Status only).
	Holder string `json:"holder,omitempty"`
	Runner string `json:"runner,omitempty"`
	// Error and StuckAt say why the runner stopped, when it stopped on an error.
	Error   string `json:"error,omitempty"`
	StuckAt string `json:"stuck_at,omitempty"`
	// DeadLetters is the length of the version's dead-letter list.
	DeadLetters int64 `json:"dead_letters"`
	// UpdatedAt is when the lease holder last wrote its status.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// Fields of the status hash.
const (
	fState     = "state"
	fHolder    = "holder"
	fHead      = "head"
	fHeadAt    = "head_at"
	fError     = "error"
	fStuckAt   = "stuck_at"
	fUpdatedAt = "updated_at"
)

func statusKey(name string, b query.Build) string { return query.Prefix(name, b) + "status" }
func leaseKey(name string, b query.Build) string  { return query.Prefix(name, b) + "lease" }

// DeadLetterKey returns the key of the dead-letter list of build b: a list
// of JSON DeadLetterEntry values, oldest first.
func DeadLetterKey(name string, b query.Build) string {
	return query.Prefix(name, b) + "deadletter"
}

// ProjectionsKey is a set of the names of every projection a runner has run,
// so that tools can list them without SCAN.
const ProjectionsKey = "el:projections"

// VersionsKey returns the set of builds (query.Build strings: "3", "3g1") of
// projection name that runners have run.
func VersionsKey(name string) string { return query.Tag(name) + ":versions" }

// ReadStatus reads the status of build b of a projection from Redis alone, as
// another process (the CLI) sees it. The zero Build means the active build.
func ReadStatus(ctx context.Context, rdb redis.Cmdable, name string, b query.Build) (Status, error) {
	if err := query.ValidateName(name); err != nil {
		return Status{}, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	active, err := activeBuild(ctx, rdb, name)
	if err != nil {
		return Status{}, fmt.Errorf("projection: status of %s: %w", name, err)
	}
	switch {
	case b.IsZero() && active.IsZero():
		return Status{}, fmt.Errorf("%w: projection %q has no active version", query.ErrNotReady, name)
	case b.IsZero():
		b = active
	}
	pipe := rdb.Pipeline()
	st := pipe.HGetAll(ctx, statusKey(name, b))
	cp := pipe.HGetAll(ctx, query.CheckpointKey(name, b))
	holder := pipe.Get(ctx, leaseKey(name, b))
	dead := pipe.LLen(ctx, DeadLetterKey(name, b))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Status{}, fmt.Errorf("projection: status of %s v%s: %w", name, b, err)
	}
	s := Status{Name: name, Version: b.Version, Generation: b.Generation,
		ActiveVersion: active.Version, ActiveGeneration: active.Generation, Active: active == b,
		Holder: holder.Val(), DeadLetters: dead.Val()}
	sv, cv := st.Val(), cp.Val()
	s.State = State(sv[fState])
	if s.State == "" {
		s.State = StateStopped
	}
	if s.Holder == "" && (s.State != StateStopped) {
		// The last holder died without a word; nobody runs this version.
		s.State = StateStopped
	}
	s.Error, s.StuckAt = sv[fError], sv[fStuckAt]
	s.Head, _ = eventstore.ParsePosition(sv[fHead])
	s.HeadAt = unixNano(sv[fHeadAt])
	s.UpdatedAt = unixNano(sv[fUpdatedAt])
	s.Checkpoint, _ = eventstore.ParsePosition(cv[query.FieldPosition])
	s.RecordedAt = unixNano(cv[query.FieldRecordedAt])
	s.fillLag(s.RecordedAt, time.Now())
	return s, nil
}

// SetHead replaces the head the lease holder last wrote with a fresher one
// (read from the store by the caller) and computes the lag again as of now.
func (s *Status) SetHead(head eventstore.Position, now time.Time) {
	s.Head, s.HeadAt = head, now
	s.fillLag(s.RecordedAt, now)
}

// fillLag computes the lag fields from the checkpoint, the head and when the
// last applied record was recorded.
func (s *Status) fillLag(recordedAt, now time.Time) {
	if s.Head.Before(s.Checkpoint) {
		s.Head = s.Checkpoint
	}
	s.LagEvents = -1
	if s.Head.Commit == s.Head.Prepare && s.Checkpoint.Commit == s.Checkpoint.Prepare {
		s.LagEvents = int64(s.Head.Commit - s.Checkpoint.Commit)
	}
	switch {
	case !s.Checkpoint.Before(s.Head):
		s.LagSeconds = 0
	case recordedAt.IsZero():
		s.LagSeconds = -1
	default:
		s.LagSeconds = max(0, now.Sub(recordedAt).Seconds())
	}
}

func unixNano(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// CheckEvictionPolicy reads the maxmemory-policy of the Redis server holding
// the read models. It returns nil for noeviction, an error matching
// ErrEvictingPolicy that names the policy for any other (allkeys-* and
// volatile-* alike: Redis Cluster and replicas included, the read side needs
// every key it wrote), and another error when the policy cannot be read
// (managed services often disable CONFIG).
func CheckEvictionPolicy(ctx context.Context, rdb redis.Cmdable) error {
	cfg, err := rdb.ConfigGet(ctx, "maxmemory*").Result()
	if err != nil {
		return fmt.Errorf("projection: read maxmemory-policy: %w", err)
	}
	policy, ok := cfg["maxmemory-policy"]
	if !ok {
		return errors.New("projection: read maxmemory-policy: the server did not report it")
	}
	if policy == "noeviction" {
		return nil
	}
	limit := "maxmemory " + cfg["maxmemory"]
	if m := cfg["maxmemory"]; m == "0" || m == "" {
		limit = "maxmemory 0: no limit yet, so nothing is evicted until one is set"
	}
	return fmt.Errorf("%w: maxmemory-policy is %s (%s); an evicted checkpoint stops its projection and an evicted "+
		"model key is silently lost: set maxmemory-policy noeviction (see docs/operations.md)", ErrEvictingPolicy, policy, limit)
}

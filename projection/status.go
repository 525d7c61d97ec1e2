package projection

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/lease"
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
	// Partitions, in Runner.Status of a partitioned projection, is how many
	// partitions this runner applies now.
	Partitions int `json:"partitions,omitempty"`
	// Parts is, in ReadStatus of a build split into partitions, the status of
	// each partition in order (its checkpoint, lag, holder, state); the
	// Status itself is then their total: the lowest checkpoint, the highest
	// lag, the dead letters summed, and Holder the holders joined by ','.
	Parts []Status `json:"parts,omitempty"`
	// Partition is the index of the partition a Parts entry is about.
	Partition int `json:"partition,omitempty"`
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

// The same keys in partition part of build b (see query.PartitionPrefix).
func partStatusKey(name string, b query.Build, part query.Partition) string {
	return query.PartitionPrefix(name, b, part) + "status"
}
func partLeaseKey(name string, b query.Build, part query.Partition) string {
	return query.PartitionPrefix(name, b, part) + "lease"
}
func partDeadLetterKey(name string, b query.Build, part query.Partition) string {
	return query.PartitionPrefix(name, b, part) + "deadletter"
}
func partRetryKey(name string, b query.Build, part query.Partition) string {
	return query.PartitionPrefix(name, b, part) + "retry"
}

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
	n, err := buildPartitions(ctx, rdb, name, b)
	if err != nil {
		return Status{}, fmt.Errorf("projection: status of %s: %w", name, err)
	}
	if n < 2 {
		return readPartStatus(ctx, rdb, name, b, query.Partition{}, active)
	}
	// A partitioned build: a row per partition, and their total.
	var total Status
	var hs []string
	for i := range n {
		s, err := readPartStatus(ctx, rdb, name, b, query.Partition{Index: i, Count: n}, active)
		if err != nil {
			return Status{}, err
		}
		s.Partition = i
		if i == 0 {
			total = s
		} else {
			if s.Checkpoint.Before(total.Checkpoint) {
				total.Checkpoint, total.RecordedAt = s.Checkpoint, s.RecordedAt
			}
			if total.Head.Before(s.Head) {
				total.Head, total.HeadAt = s.Head, s.HeadAt
			}
			total.DeadLetters += s.DeadLetters
			if total.Error == "" {
				total.Error, total.StuckAt = s.Error, s.StuckAt
			}
			total.State = worse(total.State, s.State)
			if total.UpdatedAt.Before(s.UpdatedAt) {
				total.UpdatedAt = s.UpdatedAt
			}
		}
		if s.Holder != "" && !slices.Contains(hs, s.Holder) {
			hs = append(hs, s.Holder)
		}
		total.Parts = append(total.Parts, s)
	}
	total.Holder = strings.Join(hs, ",")
	total.fillLag(total.RecordedAt, time.Now())
	return total, nil
}

// worse returns the state of two partitions that describes the build: a
// stopped or retrying partition shows, then catching up, then running.
func worse(a, b State) State {
	rank := func(s State) int {
		switch s {
		case StateStopped:
			return 5
		case StateRetrying:
			return 4
		case StateStarting, StateStandby:
			return 3
		case StateCatchingUp:
			return 2
		}
		return 1
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// readPartStatus is ReadStatus of one partition of build b (the zero
// Partition: an unpartitioned build).
func readPartStatus(ctx context.Context, rdb redis.Cmdable, name string, b query.Build, part query.Partition, active query.Build) (Status, error) {
	pipe := rdb.Pipeline()
	st := pipe.HGetAll(ctx, partStatusKey(name, b, part))
	cp := pipe.HGetAll(ctx, query.PartitionCheckpointKey(name, b, part))
	dead := pipe.LLen(ctx, partDeadLetterKey(name, b, part))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Status{}, fmt.Errorf("projection: status of %s v%s: %w", name, b, err)
	}
	holder, err := lease.Read(ctx, rdb, partLeaseKey(name, b, part))
	if err != nil {
		return Status{}, fmt.Errorf("projection: status of %s v%s: %w", name, b, err)
	}
	s := Status{Name: name, Version: b.Version, Generation: b.Generation,
		ActiveVersion: active.Version, ActiveGeneration: active.Generation, Active: active == b,
		Holder: holder.Owner, DeadLetters: dead.Val()}
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
	for i := range s.Parts {
		s.Parts[i].SetHead(head, now)
	}
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
// (managed services often disable CONFIG). On Redis Cluster every master is
// checked.
func CheckEvictionPolicy(ctx context.Context, rdb redis.Cmdable) error {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			if err := CheckEvictionPolicy(ctx, m); err != nil {
				return fmt.Errorf("%s: %w", m.Options().Addr, err)
			}
			return nil
		})
	}
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

// Status returns this runner's status: its own state (standby, running, ...)
// and what it knows of the checkpoint and head, completed from Redis with the
// active version, the lease holder and the dead-letter count when Redis
// answers.
func (r *Runner) Status(ctx context.Context) (Status, error) {
	r.mu.Lock()
	s := r.st
	s.RecordedAt = r.recordedAt
	r.mu.Unlock()
	s.fillLag(s.RecordedAt, time.Now())
	rs, err := ReadStatus(ctx, r.cfg.Redis, r.name, query.Build{Version: s.Version, Generation: s.Generation})
	if err != nil {
		return s, err
	}
	s.ActiveVersion, s.ActiveGeneration, s.Active = rs.ActiveVersion, rs.ActiveGeneration, rs.Active
	s.Holder, s.DeadLetters, s.Parts = rs.Holder, rs.DeadLetters, rs.Parts
	if s.Checkpoint.Before(rs.Checkpoint) { // a standby learns progress from Redis
		s.Checkpoint = rs.Checkpoint
		s.fillLag(time.Time{}, time.Now())
	}
	return s, nil
}

// stopped records the final state in memory and, best effort, in Redis: a
// runner that still holds its lease writes it in the status hash. One that
// stops cleanly without having applied anything to a build that has nothing
// (no checkpoint) removes the build's status instead, so that a runner that
// never ran leaves no entry behind.
func (r *Runner) stopped(err error) {
	r.setState(StateStopped, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _ = r.putStatus(ctx, err == nil && r.Checkpoint().IsZero())
}

// writeStatus writes this runner's status hash. It is fenced like a batch:
// if the runner no longer holds the lease it writes nothing and returns an
// error matching ErrFenced, so the hash is always the holder's word.
func (r *Runner) writeStatus(ctx context.Context) error {
	ok, err := r.putStatus(ctx, false)
	if err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	if !ok {
		return fmt.Errorf("%w: lease %s lost; status not written", ErrFenced, r.leaseKey)
	}
	return nil
}

// putStatus runs statusScript; ok is false when the runner does not hold
// the lease. With forget, a build that has no checkpoint and is not active
// loses its status entry instead (see statusScript).
func (r *Runner) putStatus(ctx context.Context, forget bool) (ok bool, err error) {
	if r.held == nil {
		return false, nil
	}
	r.mu.Lock()
	s := r.st
	r.mu.Unlock()
	mode := "keep"
	if forget {
		mode = "forget"
	}
	if r.part.Partitioned() {
		// The versions set and the active key are in the projection's tag,
		// the partition's keys in another slot: the fenced write touches the
		// partition's keys only, and the listing is written apart.
		n, err := partStatusScript.Run(ctx, r.cfg.Redis, []string{r.leaseKey, r.statusKey},
			r.cfg.ID, r.held.Fence().TokenArg(),
			fState, string(s.State), fHolder, r.cfg.ID, fHead, s.Head.String(), fHeadAt, timeNano(s.HeadAt),
			fError, s.Error, fStuckAt, s.StuckAt, fUpdatedAt, time.Now().UnixNano()).Int()
		if err != nil || n == 0 {
			return false, err
		}
		pipe := r.cfg.Redis.Pipeline()
		pipe.SAdd(ctx, VersionsKey(r.name), r.build.String())
		pipe.SAdd(ctx, ProjectionsKey, r.name)
		_, err = pipe.Exec(ctx)
		return true, err
	}
	n, err := statusScript.Run(ctx, r.cfg.Redis,
		[]string{r.leaseKey, r.statusKey, VersionsKey(r.name), r.checkpointKey, r.activeKey},
		r.cfg.ID, r.build.String(), mode, r.held.Fence().TokenArg(),
		fState, string(s.State), fHolder, r.cfg.ID, fHead, s.Head.String(), fHeadAt, timeNano(s.HeadAt),
		fError, s.Error, fStuckAt, s.StuckAt, fUpdatedAt, time.Now().UnixNano()).Int()
	if err != nil || n == 0 {
		return false, err
	}
	if n == 1 {
		// The set of projections is outside the projection's hash tag (it
		// lists them all), so it is written apart, after the fenced write.
		err = r.cfg.Redis.SAdd(ctx, ProjectionsKey, r.name).Err()
	}
	return true, err
}

func timeNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// refreshStatus reads the head of the log and writes the status hash.
func (r *Runner) refreshStatus(ctx context.Context) error {
	head, err := r.cfg.Store.Head(ctx)
	if err != nil {
		return fmt.Errorf("read head of the log: %w", err)
	}
	r.mu.Lock()
	r.st.Head, r.st.HeadAt = head, time.Now()
	s := r.st
	recordedAt := r.recordedAt
	r.mu.Unlock()
	s.fillLag(recordedAt, time.Now())
	r.m.lagEvents.Set(float64(s.LagEvents))
	r.m.lagSeconds.Set(s.LagSeconds)
	return r.writeStatus(ctx)
}

// partStatusScript writes a partition's status hash, fenced like
// statusScript. KEYS: lease, status. ARGV: owner, fencing token, then the
// hash's field/value pairs. Replies 1 written, 0 not the holder.
var partStatusScript = redis.NewScript(lease.FenceLua + `
if not lease_held(KEYS[1], ARGV[1], ARGV[2]) then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
return 1`)

// statusScript writes a build's status hash, fenced like a batch: only the
// holder of the build's lease (KEYS[1] = ARGV[1]) writes it, so a runner
// that lost its lease, or a standby, never overwrites the holder's word. It
// also lists the build in the versions set (KEYS[3]), for the status
// command.
//
// With ARGV[3] = 'forget', a runner stopping without having applied
// anything, on a build that has no checkpoint (KEYS[4]) and is not active
// (KEYS[5]), instead removes the status and the listing: nothing was built,
// and an entry would linger as a stopped build with full lag.
//
// KEYS: lease, status, versions, checkpoint, active. ARGV: owner, build,
// mode ('keep' or 'forget'), fencing token, then the hash's field/value
// pairs. Replies 1 written, 2 forgotten, 0 not the holder.
var statusScript = redis.NewScript(lease.FenceLua + `
if not lease_held(KEYS[1], ARGV[1], ARGV[4]) then return 0 end
if ARGV[3] == 'forget' and redis.call('EXISTS', KEYS[4]) == 0 and redis.call('GET', KEYS[5]) ~= ARGV[2] then
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[3], ARGV[2])
  return 2
end
redis.call('HSET', KEYS[2], unpack(ARGV, 5))
redis.call('SADD', KEYS[3], ARGV[2])
return 1`)

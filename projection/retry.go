package projection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/retry"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

// ErrNoDeadLetter means RetryDeadLetter found no dead letter at the position
// asked for in the build's dead-letter list.
var ErrNoDeadLetter = errors.New("projection: no such dead letter")

// RetryKey returns the key of the retry list of build b: dead letters
// an operator asked to apply again, as the JSON DeadLetterEntry they had in
// the dead-letter list, oldest request first. The build's lease holder
// empties it.
func RetryKey(name string, b query.Build) string {
	return query.Prefix(name, b) + "retry"
}

// retryRequestScript moves the dead letter of KEYS[1] whose position is
// ARGV[1] to the retry list KEYS[2], in one step: at every moment the entry
// is in exactly one of the two lists.
var retryRequestScript = redis.NewScript(`
for _, raw in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local ok, e = pcall(cjson.decode, raw)
  if ok and type(e) == 'table' and e['position'] == ARGV[1] then
    redis.call('LREM', KEYS[1], 1, raw)
    redis.call('RPUSH', KEYS[2], raw)
    return 1
  end
end
return 0`)

// RetryDeadLetterOptions names the dead letter RetryDeadLetter applies
// again.
type RetryDeadLetterOptions struct {
	// Projection is the projection's name. Required.
	Projection string
	// Build is the build whose dead letter it is; the zero Build means the
	// active build.
	Build query.Build
	// Position is the dead letter's position in the log. Required.
	Position eventstore.Position
}

// Validate reports options RetryDeadLetter would refuse, as an error
// matching ErrInvalidConfig.
func (o RetryDeadLetterOptions) Validate() error {
	if err := query.ValidateName(o.Projection); err != nil {
		return fmt.Errorf("%w: RetryDeadLetterOptions.Projection: %w", ErrInvalidConfig, err)
	}
	if !o.Build.IsZero() && (o.Build.Version < 1 || o.Build.Generation < 0) {
		return fmt.Errorf("%w: RetryDeadLetterOptions.Build %+v", ErrInvalidConfig, o.Build)
	}
	return nil
}

// RetryDeadLetter asks the runner holding the lease of build opts.Build of
// projection opts.Projection to apply the dead letter at opts.Position
// again, once the projection's code or data has been fixed. The request is
// recorded in Redis (the entry moves from the dead-letter list to the
// build's retry list, RetryKey), so it survives restarts: the lease holder
// picks it up between batches, within about Config.StatusEvery, reads the
// record from the store again and applies it in a fenced transaction that
// also removes the request, so that the record is applied once whatever
// crashes. If applying it fails Config.MaxAttempts times again, it goes
// back to the dead-letter list with the new error. The checkpoint does not
// move: the record is applied after the records that followed it in the log.
//
// It returns an error matching ErrNoDeadLetter if the build has no dead
// letter at that position.
func RetryDeadLetter(ctx context.Context, rdb redis.UniversalClient, opts RetryDeadLetterOptions) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	name, b, position := opts.Projection, opts.Build, opts.Position
	if b.IsZero() {
		a, err := activeBuild(ctx, rdb, name)
		if err != nil {
			return fmt.Errorf("projection: retry dead letter of %s: %w", name, err)
		}
		if a.IsZero() {
			return fmt.Errorf("%w: projection %q has no active version", query.ErrNotReady, name)
		}
		b = a
	}
	parts, err := buildParts(ctx, rdb, name, b)
	if err != nil {
		return fmt.Errorf("projection: retry dead letter of %s: %w", name, err)
	}
	// A record's dead letter is in the list of the partition that applies
	// it; the position alone does not say which, so ask each in turn.
	for _, part := range parts {
		n, err := retryRequestScript.Run(ctx, rdb,
			[]string{partDeadLetterKey(name, b, part), partRetryKey(name, b, part)}, position.String()).Int()
		if err != nil {
			return fmt.Errorf("projection: retry dead letter %s of %s v%s: %w", position, name, b, err)
		}
		if n > 0 {
			return nil
		}
	}
	return fmt.Errorf("%w: %s v%s has none at position %s", ErrNoDeadLetter, name, b, position)
}

// buildParts returns the partitions of build b: the zero Partition alone
// when it is unpartitioned.
func buildParts(ctx context.Context, rdb redis.Cmdable, name string, b query.Build) ([]query.Partition, error) {
	n, err := buildPartitions(ctx, rdb, name, b)
	if err != nil {
		return nil, err
	}
	if n < 2 {
		return []query.Partition{{}}, nil
	}
	parts := make([]query.Partition, n)
	for i := range parts {
		parts[i] = query.Partition{Index: i, Count: n}
	}
	return parts, nil
}

// ReadDeadLetters returns the latest dead letters of build b, at most max
// of them (all of them when max < 1), across its partitions, oldest first by
// position.
func ReadDeadLetters(ctx context.Context, rdb redis.Cmdable, name string, b query.Build, max int) ([]DeadLetterEntry, error) {
	from := int64(0)
	if max > 0 {
		from = -int64(max)
	}
	out, err := readEntries(ctx, rdb, name, b, partDeadLetterKey, from)
	if err != nil {
		return nil, fmt.Errorf("projection: dead letters of %s v%s: %w", name, b, err)
	}
	// Each partition's list is in log order; merge them by position (an
	// entry whose position does not parse goes first, as the oldest).
	pos := make(map[string]eventstore.Position, len(out))
	for _, e := range out {
		pos[e.Position], _ = eventstore.ParsePosition(e.Position)
	}
	slices.SortStableFunc(out, func(a, b DeadLetterEntry) int { return pos[a.Position].Compare(pos[b.Position]) })
	if max > 0 && len(out) > max {
		out = out[len(out)-max:]
	}
	return out, nil
}

// ReadRetries returns the dead letters of build b waiting to be applied
// again (RetryDeadLetter): oldest request first within each partition,
// partition by partition.
func ReadRetries(ctx context.Context, rdb redis.Cmdable, name string, b query.Build) ([]DeadLetterEntry, error) {
	out, err := readEntries(ctx, rdb, name, b, partRetryKey, 0)
	if err != nil {
		return nil, fmt.Errorf("projection: retries of %s v%s: %w", name, b, err)
	}
	return out, nil
}

// readEntries reads the DeadLetterEntry list keyOf names in each partition
// of build b, from index from (negative: from the end) to its end,
// partition by partition. Entries that do not decode are skipped.
func readEntries(ctx context.Context, rdb redis.Cmdable, name string, b query.Build,
	keyOf func(string, query.Build, query.Partition) string, from int64) ([]DeadLetterEntry, error) {
	parts, err := buildParts(ctx, rdb, name, b)
	if err != nil {
		return nil, err
	}
	var out []DeadLetterEntry
	for _, part := range parts {
		raw, err := rdb.LRange(ctx, keyOf(name, b, part), from, -1).Result()
		if err != nil {
			return nil, err
		}
		for _, s := range raw {
			var e DeadLetterEntry
			if json.Unmarshal([]byte(s), &e) == nil {
				out = append(out, e)
			}
		}
	}
	return out, nil
}

// retryDeadLetters applies the retry requests of the runner's build, oldest
// first, until the list is empty. It runs on the session's goroutine between
// batches, so the lease is the runner's and nothing else writes the build.
func (r *Runner) retryDeadLetters(ctx context.Context) error {
	retryKey := partRetryKey(r.name, r.build, r.part)
	for {
		raw, err := r.cfg.Redis.LIndex(ctx, retryKey, 0).Result()
		switch {
		case errors.Is(err, redis.Nil):
			return nil
		case err != nil:
			return fmt.Errorf("read retry requests: %w", err)
		}
		if err := r.retryOne(ctx, retryKey, raw); err != nil {
			return err
		}
	}
}

// retryOne handles the request raw at the head of the retry list: applied
// and removed, or moved back to the dead letters with the new error.
func (r *Runner) retryOne(ctx context.Context, retryKey, raw string) error {
	var e DeadLetterEntry
	if err := json.Unmarshal([]byte(raw), &e); err != nil {
		// Not ours to read: set it aside rather than block the list.
		return r.execRetry(ctx, retryKey, raw, nil, fmt.Errorf("unreadable retry request: %w", err))
	}
	rec, err := r.readRecord(ctx, e)
	if err != nil {
		if transient(err) || ctx.Err() != nil {
			return err
		}
		return r.execRetry(ctx, retryKey, raw, nil, err)
	}
	var last error
	for attempt := range r.cfg.MaxAttempts {
		if attempt > 0 {
			if err := retry.Sleep(ctx, r.cfg.MinBackoff); err != nil {
				return err
			}
		}
		err := r.execRetry(ctx, retryKey, raw, &rec, nil)
		var ae *applyError
		if !errors.As(err, &ae) {
			if err == nil {
				r.log.Info("dead letter applied on retry", "position", e.Position, "type", e.Type)
			}
			return err
		}
		if transient(ae.err) || ctx.Err() != nil {
			return ae.err
		}
		last = ae.err
	}
	if err := r.execRetry(ctx, retryKey, raw, &rec, last); err != nil {
		return err
	}
	r.log.Warn("dead letter failed again on retry", "position", e.Position, "type", e.Type, "error", last)
	return nil
}

// readRecord reads the record of a dead letter from the store, by its stream
// and version, and checks it is the same record.
func (r *Runner) readRecord(ctx context.Context, e DeadLetterEntry) (eventstore.Record, error) {
	for rec, err := range r.cfg.Store.ReadStream(ctx, e.StreamID, e.Version) {
		if err != nil {
			return eventstore.Record{}, fmt.Errorf("read %s version %d: %w", e.StreamID, e.Version, err)
		}
		if rec.Version != e.Version || rec.Position.String() != e.Position || (e.EventID != "" && rec.ID.String() != e.EventID) {
			return eventstore.Record{}, fmt.Errorf("record %s version %d at %s is not the dead letter's (position %s)",
				e.StreamID, e.Version, rec.Position, e.Position)
		}
		return rec, nil
	}
	return eventstore.Record{}, fmt.Errorf("record %s version %d is not in the store", e.StreamID, e.Version)
}

// execRetry runs one retry in a transaction fenced like a batch (the lease,
// the active version and the retry list are watched): with failed nil it
// applies rec and removes the request; otherwise it moves the request back
// to the dead letters with failed as its error. The checkpoint is left alone.
func (r *Runner) execRetry(ctx context.Context, retryKey, raw string, rec *eventstore.Record, failed error) error {
	for range 5 {
		err := r.cfg.Redis.Watch(ctx, func(rtx *redis.Tx) error {
			if err := r.fence(ctx, rtx); err != nil {
				return err
			}
			if head, err := rtx.LIndex(ctx, retryKey, 0).Result(); err != nil || head != raw {
				return errWatchFailed // handled by someone else meanwhile
			}
			pipe := rtx.TxPipeline()
			if failed == nil && r.mine(rec) {
				tx := &Tx{name: r.name, build: r.build, part: r.part, pipe: pipe, read: rtx}
				if err := r.proj.Apply(ctx, tx, *rec); err != nil {
					return &applyError{err: err}
				}
				// The write helpers' merged writes, as after a batch.
				tx.flush(ctx)
			}
			pipe.LRem(ctx, retryKey, 1, raw)
			if failed != nil {
				var e DeadLetterEntry
				_ = json.Unmarshal([]byte(raw), &e)
				e.Error, e.At = failed.Error(), time.Now().UTC()
				b, _ := json.Marshal(e)
				pipe.RPush(ctx, r.deadKey, b)
			}
			_, err := pipe.Exec(ctx)
			return err
		}, r.watched(retryKey)...)
		switch {
		case errors.Is(err, redis.TxFailedErr), errors.Is(err, errWatchFailed):
			continue
		case errors.Is(err, ErrFenced), errors.Is(err, ErrSuperseded):
			r.m.fenced.Inc()
			return err
		case err == nil && failed != nil:
			r.m.deadLetters.Inc()
		case err != nil && !transient(err):
			var rerr redis.Error
			if errors.As(err, &rerr) {
				return fmt.Errorf("%w: %s: retry of the dead letter %s: %w", ErrCommandFailed, r.name, raw, err)
			}
		}
		return err
	}
	return nil // the head of the list kept changing; the next pass reads it again
}

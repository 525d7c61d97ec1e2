package projection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/retry"
	"github.com/eventline/eventline/projection/internal/replay"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// applyError is a failure of Projection.Apply on batch[index].
type applyError struct {
	index int
	err   error
}

func (e *applyError) Error() string { return e.err.Error() }
func (e *applyError) Unwrap() error { return e.err }

// commit applies a batch and advances the checkpoint. A record that fails
// MaxAttempts times is handled by the OnPoison policy.
func (r *Runner) commit(ctx context.Context, batch []eventstore.Record) (err error) {
	ctx, span := r.tracer.Start(ctx, "projection "+r.name+" batch")
	if span.IsRecording() {
		r.traceBatch(span, batch)
		defer func() {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, "batch failed")
			}
			span.End()
		}()
	} else {
		defer span.End()
	}
	attempts, at := 0, -1
	for len(batch) > 0 {
		err := r.exec(ctx, batch, nil)
		var ae *applyError
		if !errors.As(err, &ae) {
			return err
		}
		if transient(ae.err) || ctx.Err() != nil {
			return ae.err
		}
		if ae.index != at {
			attempts, at = 0, ae.index
		}
		attempts++
		if attempts < r.cfg.MaxAttempts {
			r.log.Debug("projection apply failed, retrying", "position", batch[at].Position.String(), "error", ae.err)
			if err := retry.Sleep(ctx, r.cfg.MinBackoff); err != nil {
				return err
			}
			continue
		}
		bad := batch[at]
		if r.cfg.OnPoison == Stop {
			if at > 0 {
				if err := r.exec(ctx, batch[:at], nil); err != nil {
					return err
				}
			}
			stuck := fmt.Errorf("%w: %s at position %s (stream %q version %d, type %q) after %d attempts: %w",
				ErrStuck, r.name, bad.Position, bad.StreamID, bad.Version, bad.Type, attempts, ae.err)
			r.mu.Lock()
			r.st.StuckAt = bad.Position.String()
			r.mu.Unlock()
			return stuck
		}
		if err := r.exec(ctx, batch[:at+1], ae.err); err != nil {
			return err
		}
		r.log.Warn("projection record dead-lettered", "position", bad.Position.String(), "type", bad.Type, "error", ae.err)
		batch, attempts, at = batch[at+1:], 0, -1
	}
	return nil
}

// MaxBatchLinks bounds the links of a batch's span: the first MaxBatchLinks
// distinct span contexts found in its records. A batch of thousands of
// records written by as many commands would otherwise carry a link per
// command; the span's eventline.links.dropped attribute counts the other
// distinct ones.
const MaxBatchLinks = 32

// ScopeName is the OpenTelemetry instrumentation scope of the runner's spans.
const ScopeName = "github.com/eventline/eventline/projection"

// traceBatch describes batch on its span and links the span to the spans
// the batch's records were written under (the records it handles).
func (r *Runner) traceBatch(span trace.Span, batch []eventstore.Record) {
	span.SetAttributes(
		attribute.String("eventline.projection", r.name),
		attribute.Int("eventline.projection.version", r.version),
		attribute.Int("eventline.batch.records", len(batch)),
		attribute.String("eventline.batch.first_position", batch[0].Position.String()),
		attribute.String("eventline.batch.last_position", batch[len(batch)-1].Position.String()))
	seen := make(map[trace.SpanID]bool)
	dropped := 0
	for _, rec := range batch {
		if rec.Metadata.Headers[eventstore.HeaderTraceparent] == "" || r.handles != nil && !r.handles[rec.Type] {
			continue
		}
		sc := trace.SpanContextFromContext(traceContext.Extract(context.Background(), propagation.MapCarrier(rec.Metadata.Headers)))
		if _, ok := seen[sc.SpanID()]; ok || !sc.IsValid() {
			continue
		}
		if len(seen)-dropped == MaxBatchLinks {
			seen[sc.SpanID()] = false
			dropped++
			continue
		}
		seen[sc.SpanID()] = true
		span.AddLink(trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{
			attribute.String("eventline.stream", rec.StreamID),
			attribute.String("eventline.position", rec.Position.String())}})
	}
	if dropped > 0 {
		span.SetAttributes(attribute.Int("eventline.links.dropped", dropped))
	}
}

var traceContext propagation.TraceContext

// DeadLetterEntry is an entry of a dead-letter list, stored as JSON.
type DeadLetterEntry struct {
	Position string    `json:"position"`
	StreamID string    `json:"stream_id"`
	Version  uint64    `json:"version"`
	Type     string    `json:"type"`
	EventID  string    `json:"event_id"`
	Error    string    `json:"error"`
	At       time.Time `json:"at"`
}

// exec runs one batch, checking again after an aborted EXEC: the lease key
// changes when another runner takes over (the batch is then refused), the
// active-version key when any version is switched, which concerns this
// runner only if a newer version became active.
func (r *Runner) exec(ctx context.Context, batch []eventstore.Record, dead error) error {
	for range 5 {
		if err := r.execOnce(ctx, batch, dead); !errors.Is(err, errWatchFailed) {
			return err
		}
	}
	r.m.fenced.Inc()
	return fmt.Errorf("%w: lease %s or active version changed during the batch", ErrFenced, r.leaseKey)
}

// execOnce is one attempt at one batch: WATCH the lease and the active
// version, check the lease is ours and no newer version is active, apply the
// records into a MULTI pipeline, add the checkpoint, EXEC. If a watched key
// changes after the check (another runner took over, a version was
// switched), EXEC aborts and nothing lands. When dead is set, the batch's
// last record is dead-lettered with that error instead of applied.
func (r *Runner) execOnce(ctx context.Context, batch []eventstore.Record, dead error) error {
	start := time.Now()
	applied, skipped := 0, 0
	err := r.cfg.Redis.Watch(ctx, func(rtx *redis.Tx) error {
		if err := r.fence(ctx, rtx); err != nil {
			return err
		}
		pipe := rtx.TxPipeline()
		tx := &Tx{name: r.name, build: r.build, part: r.part, pipe: pipe, read: rtx}
		recs := batch
		if dead != nil {
			recs = batch[:len(batch)-1]
		}
		for i := range recs {
			rec := &recs[i]
			if !r.mine(rec) {
				skipped++
				continue
			}
			if err := r.proj.Apply(ctx, tx, *rec); err != nil {
				return &applyError{index: i, err: err}
			}
			applied++
		}
		// The write helpers' merged writes, before the checkpoint.
		tx.flush(ctx)
		last := batch[len(batch)-1]
		if dead != nil {
			b, _ := json.Marshal(DeadLetterEntry{Position: last.Position.String(), StreamID: last.StreamID, Version: last.Version,
				Type: last.Type, EventID: last.ID.String(), Error: dead.Error(), At: time.Now().UTC()})
			pipe.RPush(ctx, r.deadKey, b)
		}
		writeCheckpoint(ctx, pipe, r.checkpointKey, last)
		// Announce the checkpoint from inside the transaction: a waiter
		// (query.Watcher) is woken exactly when the checkpoint is visible,
		// never before; a fenced or aborted EXEC announces nothing.
		pipe.Publish(ctx, query.CommitChannel(r.name), query.CommitMessage(r.build, last.Position.String()))
		if r.beforeExec != nil {
			r.beforeExec()
		}
		cmds, err := pipe.Exec(ctx)
		if redis.HasErrorPrefix(err, "EXECABORT") {
			// Redis refused a command while queueing it and discarded the
			// whole transaction: nothing landed. Report why; a full Redis
			// (OOM under noeviction) is waited out like an outage.
			for _, c := range cmds {
				if cerr := c.Err(); cerr != nil && cerr != err {
					return fmt.Errorf("%w (nothing of the batch landed): %w", cerr, err)
				}
			}
		}
		return err
	}, r.watched()...)
	switch {
	case err == nil:
	case errors.Is(err, redis.TxFailedErr):
		return errWatchFailed
	case errors.Is(err, ErrSuperseded):
		r.m.fenced.Inc()
		return err
	case errors.Is(err, ErrFenced):
		r.m.fenced.Inc()
		return err
	case transient(err):
		return err
	default:
		var ae *applyError
		if errors.As(err, &ae) {
			return err
		}
		var rerr redis.Error
		if errors.As(err, &rerr) {
			return fmt.Errorf("%w: %s: batch ending at %s: %w", ErrCommandFailed, r.name, batch[len(batch)-1].Position, err)
		}
		return err
	}
	last := batch[len(batch)-1]
	r.m.applied.Add(float64(applied))
	r.m.skipped.Add(float64(skipped))
	r.m.batches.Inc()
	if dead != nil {
		r.m.deadLetters.Inc()
	}
	r.m.batchSeconds.Observe(time.Since(start).Seconds())
	r.mu.Lock()
	r.st.Checkpoint = last.Position
	r.recordedAt = last.RecordedAt
	if r.st.Head.Before(last.Position) {
		r.st.Head = last.Position
	}
	r.mu.Unlock()
	if r.afterCommit != nil {
		r.afterCommit(batch)
	}
	return nil
}

// mine reports whether the runner applies rec: a type the projection
// handles, in the runner's partition. Records it does not apply still move
// its checkpoint: every partition's checkpoint follows the whole log, so a
// reader waiting for a position on one partition is not kept waiting by
// records of the others.
func (r *Runner) mine(rec *eventstore.Record) bool {
	if r.handles != nil && !r.handles[rec.Type] {
		return false
	}
	return !r.part.Partitioned() || query.PartitionOf(r.partKey(*rec), r.part.Count) == r.part.Index
}

// watched returns the keys a batch WATCHes: the lease and the active build.
// A partition's lease is in the partition's hash tag and the active key in
// the projection's, and a Redis Cluster refuses a WATCH across slots, so a
// partition runner watches its lease only and reads the active build apart
// (fence): a switch that lands between that read and the EXEC lets one last
// batch land on the replaced build, whose keys are removed only RetireDelay
// after the switch, after its lease is free (removeBuild).
func (r *Runner) watched(extra ...string) []string {
	if r.part.Partitioned() {
		return append([]string{r.leaseKey}, extra...)
	}
	return append([]string{r.leaseKey, r.activeKey}, extra...)
}

// writeCheckpoint queues the checkpoint of a batch ending with last.
func writeCheckpoint(ctx context.Context, pipe redis.Pipeliner, key string, last eventstore.Record) {
	pipe.HSet(ctx, key,
		query.FieldPosition, last.Position.String(),
		query.FieldCommit, strconv.FormatUint(last.Position.Commit, 10),
		query.FieldPrepare, strconv.FormatUint(last.Position.Prepare, 10),
		query.FieldRecordedAt, timeNano(last.RecordedAt),
		query.FieldUpdatedAt, time.Now().UnixNano())
}

func init() {
	replay.Batch = func(ctx context.Context, rdb redis.UniversalClient, p any, b query.Build, recs []eventstore.Record) error {
		proj, ok := p.(Projection)
		if !ok {
			return fmt.Errorf("%w: %T is not a Projection", ErrInvalidConfig, p)
		}
		return applyBatch(ctx, rdb, proj, b, recs)
	}
}

// applyBatch applies recs to build b of p as execOnce does (Handles filter,
// write helpers, checkpoint, one MULTI/EXEC), without lease or retries: the
// batches of package projectiontest.
func applyBatch(ctx context.Context, rdb redis.UniversalClient, p Projection, b query.Build, recs []eventstore.Record) error {
	if len(recs) == 0 {
		return nil
	}
	var handles map[string]bool
	if hs := p.Handles(); len(hs) > 0 {
		handles = make(map[string]bool, len(hs))
		for _, h := range hs {
			handles[h] = true
		}
	}
	pipe := rdb.TxPipeline()
	tx := &Tx{name: p.Name(), build: b, pipe: pipe, read: rdb}
	for _, rec := range recs {
		if handles != nil && !handles[rec.Type] {
			continue
		}
		if err := p.Apply(ctx, tx, rec); err != nil {
			pipe.Discard()
			return fmt.Errorf("apply %s (stream %q version %d) at %s: %w", rec.Type, rec.StreamID, rec.Version, rec.Position, err)
		}
	}
	tx.flush(ctx)
	writeCheckpoint(ctx, pipe, query.CheckpointKey(p.Name(), b), recs[len(recs)-1])
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrCommandFailed, p.Name(), err)
	}
	return nil
}

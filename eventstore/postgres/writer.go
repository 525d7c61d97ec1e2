package postgres

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/internal/groupcommit"
)

// Group-commit limits. A batch is whatever is queued when the writer is free,
// up to these bounds, so batches grow with load and a lone append never waits.
const (
	maxBatchAppends = 1024
	maxBatchEvents  = 8192
	// requestQueue is the depth of the queue in front of the writer.
	requestQueue = 1024
	// maxLinger is the longest the writer waits for the callers of its previous
	// batch to come back before committing a smaller batch.
	maxLinger = 200 * time.Microsecond
	// maxAttempts bounds how often a batch is retried after a conflict with
	// another process (an event id it inserted meanwhile, a deadlock).
	maxAttempts = 4
)

type appendRequest struct {
	*groupcommit.Request
	stream   string
	expected eventstore.ExpectedVersion
	events   []eventstore.Event
	headers  [][]byte // encoded by the caller, so the writer does less; nil when no event has any
}

type appendReply struct {
	res eventstore.AppendResult
	err error
}

// writer is the goroutine that commits the appends of this Store, one
// transaction per batch of concurrent appends.
type writer struct {
	s        *Store
	requests chan *appendRequest
	batch    []*appendRequest
	// events counts the events of batch's appends.
	events int
	// commits counts committed transactions, for benchmarks to report the
	// average group size.
	commits atomic.Uint64
	// failing is true from a failed group commit to the next one that
	// succeeds, so an outage is logged once, not once per batch.
	failing bool
	// beforeCommit, when set by a test, runs between the batch's last
	// statement and its COMMIT, with the head row locked.
	beforeCommit func()
	// params holds the group statement's parameters, reused from batch to
	// batch.
	params params
}

// assumedStreams are the streams of a group statement, as arrays: name,
// assumed and decided version, last position relative to the batch (0 when
// nothing is written).
type assumedStreams struct {
	names                  []string
	assumed, versions, rel []int64
}

func newAssumedStreams(n int) assumedStreams {
	return assumedStreams{make([]string, 0, n), make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n)}
}

func newWriter(s *Store) *writer {
	return &writer{s: s, requests: make(chan *appendRequest, requestQueue)}
}

// Append implements eventstore.Store. Concurrent appends of this Store are
// committed together in one transaction; Append returns once it committed.
//
// When ctx ends before the writer took the append, Append returns ctx's error
// and nothing was written. Once the writer has taken it, Append waits for the
// commit (bounded by Config.CommitTimeout) and returns its outcome. When the
// server cannot be reached the error matches eventstore.ErrUnavailable, and
// also ErrOutcomeUnknown when the connection broke during COMMIT; without
// ErrOutcomeUnknown nothing was written.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, err
	}
	if s.closed.Load() {
		return eventstore.AppendResult{}, eventstore.ErrClosed
	}
	// The writer reads the events after Append may have returned to a
	// cancelled caller, so it gets its own slice.
	events = slices.Clone(events)
	if err := eventstore.PrepareAppend(stream, expected, events, s.cfg.MaxEventSize); err != nil {
		return eventstore.AppendResult{}, err
	}
	req := &appendRequest{
		Request:  groupcommit.NewRequest(),
		stream:   stream,
		expected: expected,
		events:   events,
	}
	for i, e := range events {
		if err := checkText(e); err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("%w: event %d (%s) for stream %q: %v",
				eventstore.ErrInvalidEvent, i, e.Type, stream, err)
		}
		if len(e.Metadata.Headers) > 0 {
			h, err := json.Marshal(e.Metadata.Headers)
			if err != nil {
				return eventstore.AppendResult{}, fmt.Errorf("%w: event %d for stream %q: headers: %v",
					eventstore.ErrInvalidEvent, i, stream, err)
			}
			if req.headers == nil {
				req.headers = make([][]byte, len(events))
			}
			req.headers[i] = h
		}
	}
	return groupcommit.Submit(ctx, s.w.requests, req, s.done, s.stopped)
}

// checkText refuses what PostgreSQL text columns cannot hold (a NUL byte,
// invalid UTF-8), so that one bad event fails its own append and not the
// transaction it shares with others.
func checkText(e eventstore.Event) error {
	for _, f := range []struct{ name, v string }{
		{"type", e.Type}, {"correlation id", e.Metadata.CorrelationID}, {"causation id", e.Metadata.CausationID},
	} {
		if !utf8.ValidString(f.v) {
			return fmt.Errorf("%s is not valid UTF-8", f.name)
		}
		if strings.IndexByte(f.v, 0) >= 0 {
			return fmt.Errorf("%s contains a NUL byte", f.name)
		}
	}
	return nil
}

// run is the writer goroutine: it takes whatever appends are queued, commits
// them in one transaction, replies, and repeats until the store closes.
func (w *writer) run() {
	// callers is how many appends the previous batch held: about how many
	// callers are appending concurrently right now.
	callers := 0
	groupcommit.Serve(w.requests, w.s.done, w.s.stopped, func(req *appendRequest, linger *time.Timer) {
		w.batch, w.events = w.batch[:0], 0
		add := func(req *appendRequest) {
			w.batch = append(w.batch, req)
			w.events += len(req.events)
		}
		full := func() bool { return len(w.batch) >= maxBatchAppends || w.events >= maxBatchEvents }
		// Callers answered by the last commit are still on their way back
		// with their next append; waiting a moment for them keeps batches
		// as large as the concurrency. A lone caller never waits.
		more := func() bool { return len(w.batch) < callers }
		groupcommit.Gather(w.requests, req, add, full, more, maxLinger, linger, nil)
		callers = len(w.batch)
		if len(w.batch) > 0 {
			start := time.Now()
			w.commit()
			w.s.metrics.Committed(len(w.batch), w.events, time.Since(start))
			// Appends that queued during the commit come from callers
			// as concurrent as this batch's: count them too, so that the
			// next batch waits for both instead of the two halves of the
			// callers taking turns at the head row.
			callers += len(w.requests)
		}
	})
}

// commit writes the batch in one transaction and answers every append in it.
// A conflict with another process (it inserted one of our event ids first, or
// a deadlock) rolls the transaction back and runs the batch again, which then
// sees what the other process wrote. Any other failure of the database fails
// every append of the batch, saying whether they may have been written.
func (w *writer) commit() {
	ctx, cancel := context.WithTimeout(context.Background(), w.s.cfg.CommitTimeout)
	defer cancel()
	var replies []appendReply
	var wrote, committing bool
	var err error
	for attempt := 1; ; attempt++ {
		if attempt == 1 {
			var fallback bool
			replies, wrote, committing, fallback, err = w.tryAssumed(ctx)
			if !fallback {
				if err == nil || !isConflict(err) {
					break
				}
				continue
			}
		}
		replies, wrote, committing, err = w.try(ctx)
		if err == nil || attempt == maxAttempts || !isConflict(err) {
			break
		}
		w.s.cfg.Logger.Debug("postgres event store: group commit conflicts with another writer; retrying",
			"appends", len(w.batch), "attempt", attempt, "error", err)
	}
	if err != nil {
		if !w.failing || committing {
			w.s.cfg.Logger.Error("postgres event store: group commit failed; appends fail until the database answers",
				"appends", len(w.batch), "outcome_known", !committing, "error", err)
		}
		w.failing = true
		if committing {
			err = fmt.Errorf("%w: %w: the connection failed during COMMIT, so the append may have been written; "+
				"retry it with the same event ids: %v", eventstore.ErrUnavailable, ErrOutcomeUnknown, err)
		} else {
			err = fmt.Errorf("%w: postgres: the append was not written: %v", eventstore.ErrUnavailable, err)
		}
		for _, req := range w.batch {
			req.Answer(eventstore.AppendResult{}, err)
		}
		return
	}
	if w.failing {
		w.s.cfg.Logger.Info("postgres event store: group commits succeed again")
		w.failing = false
	}
	w.commits.Add(1)
	for i, req := range w.batch {
		req.Answer(replies[i].res, replies[i].err)
	}
	if wrote {
		w.s.wake()
	}
}

// isConflict reports an error after which running the batch again can
// succeed: a unique violation (another process inserted one of our event ids
// after we looked), a deadlock or a serialization failure.
func isConflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "40P01" || pe.Code == "40001")
}

// streamState is a stream as the transaction found it and as the batch's
// appends leave it.
type streamState struct {
	id      int64
	version uint64
	// position of the stream's last event; relative to the batch's first
	// position when rel.
	position uint64
	rel      bool
}

// written is where an event id already is: in the log, or earlier in this
// batch (rel).
type written struct {
	stream   string
	version  uint64
	position uint64
	rel      bool
}

// pending is a reply whose position is relative to the batch's first position
// until the batch's base is known.
type pending struct {
	appendReply
	rel bool
}

// try runs the batch in one transaction of two round trips: BEGIN and the
// reads that decide the appends, then the writes and COMMIT. committing
// reports a failure after which the outcome is unknown: the connection broke
// while the second round trip, which holds the COMMIT, was in flight.
func (w *writer) try(ctx context.Context) (replies []appendReply, wrote, committing bool, err error) {
	conn, err := w.s.wpool.Acquire(ctx)
	if err != nil {
		return nil, false, false, err
	}
	defer conn.Release() // the pool drops a connection left in a transaction
	defer func() {
		if err != nil && !committing {
			conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()

	// Lock the streams that get events (in name order, so that writers in
	// other processes never deadlock on them), read the rest, and find which
	// event ids are already in the log.
	var locked, unlocked []string
	var ids [][16]byte
	for _, req := range w.batch {
		if len(req.events) > 0 {
			locked = append(locked, req.stream)
		} else {
			unlocked = append(unlocked, req.stream)
		}
		for _, e := range req.events {
			ids = append(ids, e.ID)
		}
	}
	slices.Sort(locked)
	locked = slices.Compact(locked)
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(w.s.sql.lockHead)
	b.Queue(w.s.sql.lockStreams, locked)
	b.Queue(w.s.sql.readStreams, unlocked)
	b.Queue(w.s.sql.eventsByID, ids)
	br := conn.SendBatch(ctx, b)
	for range 2 { // BEGIN, lockHead
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, false, false, err
		}
	}
	streams := make(map[string]*streamState, len(locked)+len(unlocked))
	for range 2 {
		rows, _ := br.Query()
		var st streamState
		var name string
		var version, position int64
		_, err := pgx.ForEachRow(rows, []any{&st.id, &name, &version, &position}, func() error {
			if streams[name] == nil { // the locked row, read first, is the one to keep
				streams[name] = &streamState{id: st.id, version: uint64(version), position: uint64(position)}
			}
			return nil
		})
		if err != nil {
			br.Close()
			return nil, false, false, err
		}
	}
	seen := map[uuid.UUID]written{}
	{
		rows, _ := br.Query()
		var id [16]byte
		var f written
		var version, position int64
		_, err := pgx.ForEachRow(rows, []any{&id, &f.stream, &version, &position}, func() error {
			f.version, f.position = uint64(version), uint64(position)
			seen[id] = f
			return nil
		})
		if err != nil {
			br.Close()
			return nil, false, false, err
		}
	}
	if err := br.Close(); err != nil {
		return nil, false, false, err
	}

	d := w.decide(streams, seen)
	rows := &d.rows

	// Take positions last, so the head row is locked only for the inserts and
	// the commit: the lock orders commits, and one batch shares it. COMMIT
	// goes in the same round trip (after the test hook, when one is set).
	total := len(rows.rel)
	b = &pgx.Batch{}
	if total > 0 {
		b.Queue(w.s.sql.takePositions, total)
		b.Queue(w.s.sql.insertEvents, total, rows.rel, rows.stream, rows.version, rows.id, rows.typ,
			rows.correlation, rows.causation, rows.headers, rows.data)
		b.Queue(w.s.sql.updateStreams, total, d.ids, d.versions, d.rels)
		b.Queue(w.s.sql.notify, w.s.channel)
	}
	hook := w.beforeCommit
	if hook == nil {
		b.Queue("COMMIT")
	}
	committing = true
	br = conn.SendBatch(ctx, b)
	var base uint64
	err = func() error {
		if total > 0 {
			var head int64
			if err := br.QueryRow().Scan(&head); err != nil {
				return err
			}
			base = uint64(head) - uint64(total)
		}
		for range b.Len() - min(total, 1) {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		return nil
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil && hook != nil {
		hook()
		_, err = conn.Exec(ctx, "COMMIT")
	}
	if err != nil {
		if !isSent(err) {
			// The server refused a statement or the COMMIT, or nothing was
			// sent: the transaction did not commit.
			committing = false
		}
		return nil, false, committing, err
	}
	return d.replies(base), total > 0, false, nil
}

// decision is what a batch writes and answers.
type decision struct {
	results []pending
	rows    eventRows
	// The written streams, each once: name, id (0 when unknown), final
	// version and last position relative to the batch.
	names               []string
	ids, versions, rels []int64
}

// decide decides each append of the batch against its stream as the appends
// before it left it. streams holds the state of every stream the batch
// appends events to (a missing one is taken as new), seen the event ids
// already in the log.
func (w *writer) decide(streams map[string]*streamState, seen map[uuid.UUID]written) *decision {
	// Every slice is allocated at its final size at once: the writer's
	// allocations, and the collections they cost, are a part of every
	// commit's time.
	d := &decision{results: make([]pending, len(w.batch)), rows: newEventRows(w.events)}
	rows := &d.rows
	for i, req := range w.batch {
		st := streams[req.stream]
		if st == nil {
			st = &streamState{}
			streams[req.stream] = st
		}
		if res, rel, done, appendErr := repeated(req, seen); done {
			d.results[i] = pending{appendReply{res: res, err: appendErr}, rel}
			continue
		}
		if !req.expected.Allows(st.version) {
			d.results[i].err = &eventstore.WrongVersionError{StreamID: req.stream, Expected: req.expected, Actual: st.version}
			continue
		}
		if len(req.events) == 0 {
			d.results[i] = pending{appendReply{res: eventstore.AppendResult{StreamID: req.stream,
				FirstVersion: st.version, LastVersion: st.version, Position: eventstore.SeqPosition(st.position)}}, st.rel}
			continue
		}
		for k, e := range req.events {
			rel := uint64(len(rows.rel)) + 1
			version := st.version + uint64(k) + 1
			var headers []byte
			if req.headers != nil {
				headers = req.headers[k]
			}
			rows.add(rel, st.id, req.stream, version, e, headers)
			seen[e.ID] = written{stream: req.stream, version: version, position: rel, rel: true}
		}
		n := uint64(len(req.events))
		st.version += n
		if !st.rel {
			d.names = append(d.names, req.stream)
		}
		st.position, st.rel = uint64(len(rows.rel)), true
		d.results[i] = pending{appendReply{res: eventstore.AppendResult{StreamID: req.stream,
			FirstVersion: st.version - n + 1, LastVersion: st.version, Position: eventstore.SeqPosition(st.position)}}, true}
	}
	// Each written stream's row gets its final version and position, once.
	for _, name := range d.names {
		st := streams[name]
		d.ids = append(d.ids, st.id)
		d.versions = append(d.versions, int64(st.version))
		d.rels = append(d.rels, int64(st.position))
	}
	return d
}

// replies returns the answers of the batch once its positions start after
// base.
func (d *decision) replies(base uint64) []appendReply {
	replies := make([]appendReply, len(d.results))
	for i, p := range d.results {
		if p.rel && p.err == nil {
			p.res.Position = eventstore.SeqPosition(base + p.res.Position.Commit)
		}
		replies[i] = p.appendReply
	}
	return replies
}

// tryAssumed runs the batch as one statement in one round trip, when every
// stream it appends to can be assumed to be at the version its first append
// expects (Exact or NoStream, as command handlers append). The appends are
// decided in Go from those versions; the statement (writeAssumed) checks
// the assumption and writes, and the unique index on event ids refuses an id
// already in the log. fallback reports that the batch must run on the path that reads
// first (try): an append the assumption cannot serve (Any, StreamExists, no
// events), a stream at another version, an event id already written.
// committing is as for try.
func (w *writer) tryAssumed(ctx context.Context) (replies []appendReply, wrote, committing, fallback bool, err error) {
	streams := make(map[string]*streamState, len(w.batch))
	// One state per stream, allocated at once (one per append at most, so
	// the array never moves while streams points into it).
	states := make([]streamState, 0, len(w.batch))
	names := make([]string, 0, len(w.batch))
	for _, req := range w.batch {
		if len(req.events) == 0 {
			return nil, false, false, true, nil
		}
		if streams[req.stream] != nil {
			continue
		}
		v, exact := req.expected.Exact()
		if !exact && !req.expected.IsNoStream() {
			return nil, false, false, true, nil
		}
		states = append(states, streamState{version: v})
		streams[req.stream] = &states[len(states)-1]
		names = append(names, req.stream)
	}
	assumed := make([]uint64, len(names))
	for i, name := range names {
		assumed[i] = streams[name].version
	}
	d := w.decide(streams, make(map[uuid.UUID]written, w.events))
	rows := &d.rows
	total := len(rows.rel)
	upd, ins := newAssumedStreams(len(names)), newAssumedStreams(len(names))
	for i, name := range names {
		st := streams[name]
		rel := int64(0)
		if st.rel {
			rel = int64(st.position)
		}
		to := &upd
		if assumed[i] == 0 {
			to = &ins
		}
		to.names = append(to.names, name)
		to.assumed = append(to.assumed, int64(assumed[i]))
		to.versions = append(to.versions, int64(st.version))
		to.rel = append(to.rel, rel)
	}

	conn, err := w.s.wpool.Acquire(ctx)
	if err != nil {
		return nil, false, false, false, err
	}
	defer conn.Release() // the pool drops a connection left in a transaction
	hook := w.beforeCommit
	if hook != nil {
		// A test holds the transaction open before COMMIT: run the statement
		// in an explicit transaction.
		if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
			return nil, false, false, false, err
		}
		defer func() {
			if err != nil && !committing {
				conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
			}
		}()
	}
	sd, err := conn.Conn().Prepare(ctx, "eventline_write_assumed", w.s.sql.writeAssumed)
	if err != nil {
		return nil, false, false, false, err
	}
	p := &w.params
	p.reset()
	p.int8(int64(total))
	p.texts(upd.names)
	p.int8s(upd.assumed)
	p.int8s(upd.versions)
	p.int8s(upd.rel)
	p.texts(ins.names)
	p.int8s(ins.versions)
	p.int8s(ins.rel)
	p.texts(rows.streamName)
	p.int8s(rows.rel)
	p.int8s(rows.version)
	p.uuids(rows.id)
	p.texts(rows.typ)
	p.texts(rows.correlation)
	p.texts(rows.causation)
	p.byteas(rows.headers)
	p.byteas(rows.data)
	p.text(w.s.channel)
	committing = true
	base, err := execAssumed(ctx, conn.Conn().PgConn(), sd, p.values())
	p.release()
	if err == nil && hook != nil {
		hook()
		_, err = conn.Exec(ctx, "COMMIT")
	}
	if err != nil {
		if !isSent(err) {
			committing = false
		}
		var pe *pgconn.PgError
		if errors.As(err, &pe) && (pe.Code == "22012" || pe.Code == "23505") {
			// A stream was not at the assumed version (22012), or an event
			// id is in the log already (23505): nothing was written.
			if hook != nil {
				if _, err := conn.Exec(context.WithoutCancel(ctx), "ROLLBACK"); err != nil {
					return nil, false, false, false, err
				}
			}
			return nil, false, false, true, nil
		}
		return nil, false, committing, false, err
	}
	return d.replies(uint64(base)), total > 0, false, false, nil
}

// binaryFormat is the format code of every parameter and result column of the
// group statement.
var binaryFormat = []int16{1}

// execAssumed runs the prepared group statement with encoded parameters and
// returns the position before the batch's first.
func execAssumed(ctx context.Context, conn *pgconn.PgConn, sd *pgconn.StatementDescription, values [][]byte) (int64, error) {
	rr := conn.ExecStatement(ctx, sd, values, binaryFormat, binaryFormat)
	// A row's values are valid only until the next NextRow, which may read
	// into the same buffer: decode the position at once.
	var b int64
	rows, ok := 0, false
	for rr.NextRow() {
		v := rr.Values()[0]
		if ok = len(v) == 8; ok {
			b = int64(binary.BigEndian.Uint64(v))
		}
		rows++
	}
	if _, err := rr.Close(); err != nil {
		return 0, err
	}
	if rows != 1 || !ok {
		return 0, fmt.Errorf("postgres: the group statement returned %d rows, want 1 with a position", rows)
	}
	return b, nil
}

// isSent reports whether a failure of the round trip that holds the COMMIT
// leaves its outcome unknown. An ERROR reply is definite: the statement or
// the COMMIT failed and the transaction was rolled back. A FATAL one ends the
// session, possibly right after a COMMIT that succeeded, and a broken
// connection may have lost the reply, so both are unknown unless nothing was
// sent at all.
func isSent(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Severity == "FATAL" || pe.Severity == "PANIC"
	}
	return !pgconn.SafeToRetry(err)
}

// repeated reports done when some of the append's event ids are already
// written, in the log or earlier in the batch: either the append repeats one
// that was written (the same ids, in order, in its stream where its
// expectation allows) and gets the original result with Repeated set, or it is
// refused with ErrDuplicateEvent. rel says the result's position is relative
// to the batch.
func repeated(req *appendRequest, seen map[uuid.UUID]written) (res eventstore.AppendResult, rel, done bool, appendErr error) {
	missing := 0
	for _, e := range req.events {
		if _, ok := seen[e.ID]; !ok {
			missing++
		}
	}
	if len(req.events) == 0 || missing == len(req.events) {
		return res, false, false, nil
	}
	found := make([]written, len(req.events))
	for k, e := range req.events {
		found[k] = seen[e.ID]
	}
	if missing == 0 {
		first := found[0]
		match := first.stream == req.stream && req.expected.Allows(first.version-1)
		for k, f := range found {
			match = match && f.stream == req.stream && f.version == first.version+uint64(k) && f.rel == first.rel
		}
		if match {
			last := found[len(found)-1]
			return eventstore.AppendResult{StreamID: req.stream, FirstVersion: first.version, LastVersion: last.version,
				Position: eventstore.SeqPosition(last.position), Repeated: true}, last.rel, true, nil
		}
	}
	for k, f := range found {
		if f.stream != "" {
			return res, false, true, fmt.Errorf("%w: %s is already stream %q version %d",
				eventstore.ErrDuplicateEvent, req.events[k].ID, f.stream, f.version)
		}
	}
	return res, false, false, nil
}

// eventRows are the columns of the events a batch inserts, sent as arrays
// and unnested by the server: one statement whatever the batch's size.
type eventRows struct {
	rel, stream, version   []int64
	streamName             []string
	id                     [][16]byte
	typ                    []string
	correlation, causation []string
	headers, data          [][]byte
}

func newEventRows(n int) eventRows {
	return eventRows{
		rel: make([]int64, 0, n), stream: make([]int64, 0, n), version: make([]int64, 0, n),
		streamName: make([]string, 0, n), id: make([][16]byte, 0, n), typ: make([]string, 0, n),
		correlation: make([]string, 0, n), causation: make([]string, 0, n),
		headers: make([][]byte, 0, n), data: make([][]byte, 0, n),
	}
}

func (r *eventRows) add(rel uint64, stream int64, streamName string, version uint64, e eventstore.Event, headers []byte) {
	data := e.Data
	if data == nil {
		data = []byte{}
	}
	r.rel = append(r.rel, int64(rel))
	r.stream = append(r.stream, stream)
	r.streamName = append(r.streamName, streamName)
	r.version = append(r.version, int64(version))
	r.id = append(r.id, e.ID)
	r.typ = append(r.typ, e.Type)
	r.correlation = append(r.correlation, e.Metadata.CorrelationID)
	r.causation = append(r.causation, e.Metadata.CausationID)
	r.headers = append(r.headers, headers)
	r.data = append(r.data, data)
}

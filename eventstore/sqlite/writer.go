package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/internal/groupcommit"
	sqlite3 "modernc.org/sqlite"
	sqlitelib "modernc.org/sqlite/lib"
)

// Group-commit limits. A batch is whatever is queued when the writer is free,
// up to these bounds, so batches grow with load and a lone append never waits;
// the writer waits a bounded moment for more only when more are known to be
// on their way (see gather).
const (
	maxBatchAppends = 1024
	maxBatchEvents  = 8192
	// requestQueue is the depth of the queue in front of the writer.
	requestQueue = 1024
	// maxCachedStreams bounds the writer's stream cache; past it the cache
	// starts over, reloading streams on demand.
	maxCachedStreams = 100_000
	// maxLinger is the longest the writer waits, with SyncNormal, for the
	// callers of its previous batch to come back before committing a smaller
	// batch.
	maxLinger = 200 * time.Microsecond
	// maxCommitWindow bounds the wait, with SyncFull, for the callers of the
	// previous batch to come back; within it, the writer waits at most half
	// as long as its last commit took. An fsync costs the same for one append
	// as for sixty, so when commits are slow a larger batch pays for a short
	// wait; when they are fast, the window shrinks with them.
	maxCommitWindow = 500 * time.Microsecond
)

type appendRequest struct {
	*groupcommit.Request
	stream   string
	expected eventstore.ExpectedVersion
	events   []eventstore.Event
	headers  [][]byte // encoded by the caller, so the writer does less
	// round is the writer's answered count when the append was queued.
	round uint64
}

type appendReply struct {
	res eventstore.AppendResult
	err error
}

// streamState is the writer's knowledge of one stream, valid as long as no
// other connection wrote to the file.
type streamState struct {
	id       int64 // 0: the stream does not exist yet
	version  uint64
	position uint64 // of the stream's last event
}

// writer is the single goroutine that commits appends. It owns conn, the
// stream cache and head; nothing else touches them.
type writer struct {
	s        *Store
	conn     *sql.Conn
	requests chan *appendRequest
	stmts    writeStmts
	// dataVersion is PRAGMA data_version after our last commit; when it changes
	// another process wrote, and head and streams are reloaded.
	dataVersion int64
	head        uint64
	streams     map[string]*streamState
	batch       []*appendRequest
	replies     []appendReply
	// commits counts committed transactions, for benchmarks to report the
	// average group size.
	commits atomic.Uint64
	// answered counts the batches the writer has answered, committed or
	// failed. An append records it when queued, so that the writer can tell
	// the callers it answered last, coming back with their next append, from
	// those that were already waiting.
	answered atomic.Uint64
	// round is answered when the batch being gathered began; returners
	// counts the batch's appends queued since, events its events.
	round             uint64
	returners, events int
	// lastCommit is how long the last commit took, fsync included.
	lastCommit time.Duration
	// linger and window are maxLinger and maxCommitWindow; tests lengthen
	// them to make a wait certain.
	linger, window time.Duration
}

type writeStmts struct {
	begin, commit, rollback, dataVersion, head           *sql.Stmt
	streamByName, streamTail, insertStream, deleteStream *sql.Stmt
	insertEvent, deleteEventsFrom, eventByID             *sql.Stmt
}

func newWriter(ctx context.Context, s *Store, conn *sql.Conn) (*writer, error) {
	w := &writer{
		s:           s,
		conn:        conn,
		requests:    make(chan *appendRequest, requestQueue),
		dataVersion: -1,
		streams:     map[string]*streamState{},
		linger:      maxLinger,
		window:      maxCommitWindow,
	}
	st := &w.stmts
	for _, p := range []struct {
		stmt **sql.Stmt
		sql  string
	}{
		{&st.begin, "BEGIN IMMEDIATE"},
		{&st.commit, "COMMIT"},
		{&st.rollback, "ROLLBACK"},
		{&st.dataVersion, "PRAGMA data_version"},
		{&st.head, "SELECT coalesce(max(position), 0) FROM events"},
		{&st.streamByName, "SELECT id FROM streams WHERE name = ?"},
		{&st.streamTail, "SELECT version, position FROM events WHERE stream = ? ORDER BY version DESC LIMIT 1"},
		{&st.insertStream, "INSERT INTO streams (name) VALUES (?)"},
		{&st.deleteStream, "DELETE FROM streams WHERE id = ?"},
		{&st.insertEvent, insertEventSQL},
		{&st.deleteEventsFrom, "DELETE FROM events WHERE position >= ?"},
		{&st.eventByID, "SELECT e.position, e.version, s.name FROM events e JOIN streams s ON s.id = e.stream WHERE e.id = ?"},
	} {
		stmt, err := conn.PrepareContext(ctx, p.sql)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("prepare %q: %w", p.sql, err)
		}
		*p.stmt = stmt
	}
	return w, nil
}

// close releases the statements and the connection. Only after run returned.
func (w *writer) close() error {
	var errs []error
	st := &w.stmts
	for _, stmt := range []*sql.Stmt{st.begin, st.commit, st.rollback, st.dataVersion, st.head,
		st.streamByName, st.streamTail, st.insertStream, st.deleteStream,
		st.insertEvent, st.deleteEventsFrom, st.eventByID} {
		if stmt != nil {
			errs = append(errs, stmt.Close())
		}
	}
	return errors.Join(append(errs, w.conn.Close())...)
}

// Append implements eventstore.Store. Concurrent appends are committed
// together in one transaction; Append returns once its transaction committed.
//
// When ctx ends before the writer took the append, Append returns ctx's error
// and nothing was written. Once the writer has taken it, Append waits for the
// commit (one group commit, normally milliseconds) and returns its outcome.
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
	// PrepareAppend also gives events without an id a time-ordered one.
	if err := eventstore.PrepareAppend(stream, expected, events, s.cfg.MaxEventSize); err != nil {
		return eventstore.AppendResult{}, err
	}
	req := &appendRequest{
		Request:  groupcommit.NewRequest(),
		stream:   stream,
		expected: expected,
		events:   events,
		headers:  make([][]byte, len(events)),
		round:    s.w.answered.Load(),
	}
	for i, e := range events {
		h, err := encodeHeaders(e.Metadata.Headers)
		if err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("%w: event %d for stream %q: headers: %v",
				eventstore.ErrInvalidEvent, i, stream, err)
		}
		req.headers[i] = h
	}
	return groupcommit.Submit(ctx, s.w.requests, req, s.done, s.stopped)
}

const insertEventSQL = `INSERT INTO events
	(position, stream, version, id, type, recorded_at, correlation_id, causation_id, headers, data)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// encodeHeaders returns nil for no headers, which is stored as NULL.
func encodeHeaders(h map[string]string) ([]byte, error) {
	if len(h) == 0 {
		return nil, nil
	}
	return json.Marshal(h)
}

// nullIfEmpty stores an absent metadata string as NULL.
func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// run is the writer goroutine: it gathers a batch of the queued appends,
// commits them in one transaction, replies, and repeats until the store
// closes. Appends queued while a commit runs (and its fsync) wait in the
// queue and form the next batch.
func (w *writer) run() {
	// callers is how many appends the previous batch held: about how many
	// callers are appending concurrently right now.
	callers := 0
	groupcommit.Serve(w.requests, w.s.done, w.s.stopped, func(req *appendRequest, timer *time.Timer) {
		w.gather(req, callers, timer)
		callers = len(w.batch)
		if len(w.batch) > 0 {
			start := time.Now()
			w.commit()
			w.lastCommit = time.Since(start)
		}
	})
}

// gather makes the batch: req, every append queued behind it, and, while
// more are known to be on their way, those arriving within a short window.
//
// Callers answered by the last commit are still on their way back with their
// next append. Waiting a moment for them makes batches as large as the
// concurrency, instead of alternating between a large batch and a few tiny
// ones. A lone caller never waits: the previous batch held one append, and
// it is that append's caller who is back.
//
// With SyncNormal a commit is cheap, so the writer waits at most maxLinger
// for the batch to be as large as the previous one. With SyncFull each commit
// costs an fsync whatever its size, so the writer waits for every caller it
// answered last (those that were already queued are in the batch), within
// half the last commit's time and at most maxCommitWindow: the batches then
// hold about all the concurrent callers, and the fsyncs per append fall.
func (w *writer) gather(req *appendRequest, callers int, timer *time.Timer) {
	w.batch = w.batch[:0]
	w.returners, w.events, w.round = 0, 0, w.answered.Load()
	wait, more := w.linger, func() bool { return len(w.batch) < callers }
	if w.s.cfg.Sync == SyncFull {
		wait, more = min(w.lastCommit/2, w.window), func() bool { return w.returners < callers }
	}
	groupcommit.Gather(w.requests, req, w.add, w.full, more, wait, timer)
}

// full reports whether the batch reached a group-commit limit.
func (w *writer) full() bool {
	return len(w.batch) >= maxBatchAppends || w.events >= maxBatchEvents
}

// add puts a request the writer took into the batch.
func (w *writer) add(req *appendRequest) {
	w.batch = append(w.batch, req)
	w.events += len(req.events)
	if req.round >= w.round {
		w.returners++
	}
}

// commit writes the batch in one transaction. Each append is checked against
// its stream as left by the appends before it in the batch; one that fails
// writes nothing and does not affect the others. An error of the database
// itself fails the whole batch.
func (w *writer) commit() {
	ctx := context.Background()
	w.replies = w.replies[:0]
	wrote := false
	err := func() error {
		if _, err := w.stmts.begin.ExecContext(ctx); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		if err := w.syncWithFile(ctx); err != nil {
			return err
		}
		now := time.Now().UTC()
		for _, req := range w.batch {
			res, appendErr, err := w.apply(ctx, req, now)
			if err != nil {
				return fmt.Errorf("append to stream %q: %w", req.stream, err)
			}
			wrote = wrote || (appendErr == nil && len(req.events) > 0)
			w.replies = append(w.replies, appendReply{res: res, err: appendErr})
		}
		if _, err := w.stmts.commit.ExecContext(ctx); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	}()
	if err != nil {
		// Whatever the transaction did is undone; forget what the writer
		// learned inside it.
		w.stmts.rollback.ExecContext(ctx)
		w.forget()
		w.s.cfg.Logger.Error("sqlite event store: group commit failed", "path", w.s.path,
			"appends", len(w.batch), "error", err)
		err = fmt.Errorf("%w: sqlite %s: %v", eventstore.ErrUnavailable, w.s.path, err)
		w.answered.Add(1)
		for _, req := range w.batch {
			req.Answer(eventstore.AppendResult{}, err)
		}
		return
	}
	w.commits.Add(1)
	w.answered.Add(1)
	for i, req := range w.batch {
		req.Answer(w.replies[i].res, w.replies[i].err)
	}
	if wrote {
		w.s.notifyCommit()
		w.s.wantCheckpoint()
	}
}

// forget drops the cached head and streams; they are reloaded from the file.
func (w *writer) forget() {
	w.dataVersion = -1
	clear(w.streams)
}

// syncWithFile reloads head and forgets cached streams when another
// connection (another process) committed since our last transaction.
func (w *writer) syncWithFile(ctx context.Context) error {
	var dv int64
	if err := w.stmts.dataVersion.QueryRowContext(ctx).Scan(&dv); err != nil {
		return fmt.Errorf("data_version: %w", err)
	}
	if dv == w.dataVersion && len(w.streams) < maxCachedStreams {
		return nil
	}
	clear(w.streams)
	var head int64
	if err := w.stmts.head.QueryRowContext(ctx).Scan(&head); err != nil {
		return fmt.Errorf("head: %w", err)
	}
	w.head, w.dataVersion = uint64(head), dv
	return nil
}

// stream returns the cached state of a stream, loading it on a miss.
func (w *writer) stream(ctx context.Context, name string) (*streamState, error) {
	if st, ok := w.streams[name]; ok {
		return st, nil
	}
	st := &streamState{}
	err := w.stmts.streamByName.QueryRowContext(ctx, name).Scan(&st.id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		st.id = 0
	case err != nil:
		return nil, err
	default:
		var version, position int64
		if err := w.stmts.streamTail.QueryRowContext(ctx, st.id).Scan(&version, &position); err != nil {
			return nil, err
		}
		st.version, st.position = uint64(version), uint64(position)
	}
	w.streams[name] = st
	return st, nil
}

// apply writes one append inside the open transaction. appendErr is the
// append's own failure (wrong version, duplicate id); err is a failure of the
// database, which fails the batch.
func (w *writer) apply(ctx context.Context, req *appendRequest, now time.Time) (res eventstore.AppendResult, appendErr, err error) {
	st, err := w.stream(ctx, req.stream)
	if err != nil {
		return res, nil, err
	}
	if !req.expected.Allows(st.version) {
		// A repeat of an append that succeeded no longer matches the version it
		// expected, so look for one before refusing.
		if res, done, appendErr, err := w.repeatedAppend(ctx, req); done || err != nil {
			return res, appendErr, err
		}
		return res, &eventstore.WrongVersionError{StreamID: req.stream, Expected: req.expected, Actual: st.version}, nil
	}
	if len(req.events) == 0 {
		return eventstore.AppendResult{StreamID: req.stream, FirstVersion: st.version, LastVersion: st.version,
			Position: eventstore.SeqPosition(st.position)}, nil, nil
	}
	streamID, created := st.id, false
	if streamID == 0 {
		r, err := w.stmts.insertStream.ExecContext(ctx, req.stream)
		if err != nil {
			return res, nil, err
		}
		if streamID, err = r.LastInsertId(); err != nil {
			return res, nil, err
		}
		created = true
	}
	first := w.head + 1
	recordedAt := now.UnixNano()
	for k, e := range req.events {
		data := e.Data
		if data == nil {
			data = []byte{}
		}
		_, err := w.stmts.insertEvent.ExecContext(ctx, int64(first)+int64(k), streamID,
			int64(st.version)+int64(k)+1, e.ID[:], e.Type, recordedAt,
			nullIfEmpty(e.Metadata.CorrelationID), nullIfEmpty(e.Metadata.CausationID), req.headers[k], data)
		if err == nil {
			continue
		}
		// Undo this append's rows so that its neighbours in the batch commit
		// without it.
		if _, uerr := w.stmts.deleteEventsFrom.ExecContext(ctx, int64(first)); uerr != nil {
			return res, nil, errors.Join(err, uerr)
		}
		if created {
			if _, uerr := w.stmts.deleteStream.ExecContext(ctx, streamID); uerr != nil {
				return res, nil, errors.Join(err, uerr)
			}
		}
		if !isUniqueViolation(err) {
			return res, nil, err
		}
		res, done, appendErr, rerr := w.repeatedAppend(ctx, req)
		if rerr != nil {
			return res, nil, rerr
		}
		if !done {
			// Only the (stream, version) index can have refused the row, so the
			// cache was wrong: forget it and fail the batch.
			w.forget()
			return res, nil, fmt.Errorf("stream %q version %d already written: %w", req.stream, st.version+uint64(k)+1, err)
		}
		return res, appendErr, nil
	}
	n := uint64(len(req.events))
	w.head += n
	st.id = streamID
	st.version += n
	st.position = w.head
	return eventstore.AppendResult{StreamID: req.stream, FirstVersion: st.version - n + 1, LastVersion: st.version,
		Position: eventstore.SeqPosition(w.head)}, nil, nil
}

// repeatedAppend reports done when some of the append's event ids are already
// in the log: either the append repeats one that was written (same ids, in
// order, where its expectation allows) and gets the original result with
// Repeated set, or it is refused with ErrDuplicateEvent.
func (w *writer) repeatedAppend(ctx context.Context, req *appendRequest) (res eventstore.AppendResult, done bool, appendErr, err error) {
	type found struct {
		position, version uint64
		stream            string
	}
	var seen []found
	var missing int
	for _, e := range req.events {
		var f found
		var position, version int64
		err := w.stmts.eventByID.QueryRowContext(ctx, e.ID[:]).Scan(&position, &version, &f.stream)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			missing++
			seen = append(seen, found{})
			continue
		case err != nil:
			return res, false, nil, err
		}
		f.position, f.version = uint64(position), uint64(version)
		seen = append(seen, f)
	}
	if missing == len(req.events) {
		return res, false, nil, nil
	}
	if missing == 0 {
		first := seen[0]
		match := first.stream == req.stream && req.expected.Allows(first.version-1)
		for k, f := range seen {
			match = match && f.stream == req.stream && f.version == first.version+uint64(k)
		}
		if match {
			last := seen[len(seen)-1]
			return eventstore.AppendResult{StreamID: req.stream, FirstVersion: first.version,
				LastVersion: last.version, Position: eventstore.SeqPosition(last.position), Repeated: true}, true, nil, nil
		}
	}
	for k, f := range seen {
		if f.stream != "" {
			return res, true, fmt.Errorf("%w: %s is already stream %q version %d",
				eventstore.ErrDuplicateEvent, req.events[k].ID, f.stream, f.version), nil
		}
	}
	return res, false, nil, nil
}

func isUniqueViolation(err error) bool {
	var e *sqlite3.Error
	return errors.As(err, &e) && (e.Code() == sqlitelib.SQLITE_CONSTRAINT_UNIQUE ||
		e.Code() == sqlitelib.SQLITE_CONSTRAINT_PRIMARYKEY)
}

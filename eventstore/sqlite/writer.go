package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
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
	// maxLinger is the longest the writer waits for the callers of its
	// previous batch to come back before committing a smaller batch.
	maxLinger = 200 * time.Microsecond
	// syncQueue is how many committed batches may wait for the syncer; past
	// it the writer waits for an fsync before committing more.
	syncQueue = 64
	// maxCommitWindow bounds the wait, with SyncFull, for callers to come
	// back (see gather). An fsync costs the same for one append as for
	// sixty: a batch committed while the last one syncs waits for the next
	// fsync anyway, so it may as well hold every caller that can come back.
	// The window ends as soon as they are all back, so it is long only when
	// the callers are slow to come back, that is when the process is short
	// of CPU; then a larger batch is what saves CPU. At 1 ms, 64 callers of
	// the cart workload on a loaded machine came back in groups of 15–18
	// and a FULL command cost 1.2–1.4 times the CPU of a NORMAL one; at
	// 2 ms the groups held 26–32 appends (docs/benchmarks.md).
	maxCommitWindow = 2 * time.Millisecond
	// maxSyncWait bounds the syncer's wait for the writer's next batch (see
	// syncBehind): every append it already holds waits with it.
	maxSyncWait = time.Millisecond
)

type appendRequest struct {
	*groupcommit.Request
	stream   string
	expected eventstore.ExpectedVersion
	events   []eventstore.Event
	headers  [][]byte // encoded by the caller, so the writer does less
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
	events      int // in batch
	// commits counts committed transactions, for benchmarks to report the
	// average group size.
	commits atomic.Uint64
	// linger is maxLinger, or maxCommitWindow with SyncFull; tests lengthen
	// it to make a wait certain.
	linger time.Duration

	// With SyncFull the writer commits with synchronous=NORMAL and hands each
	// committed batch to the syncer goroutine, which fsyncs the WAL and only
	// then answers the batch's callers (see syncBehind). synced carries the
	// batches; syncStopped is closed when the syncer has answered them all.
	synced      chan *committed
	syncStopped chan struct{}
	// syncWake tells a waiting gather that the syncer answered appends,
	// whose callers may now come back; capacity 1.
	syncWake chan struct{}
	// wal is the -wal file, opened by the syncer for its fsyncs.
	wal *os.File
	// inFlight counts the appends committed and not yet answered: their
	// callers cannot come back before the fsync, so gather does not wait
	// for them.
	inFlight atomic.Int64
	// unsynced guards the positions this writer committed that no fsync
	// covers yet; Store.head hides them from readers.
	unsynced struct {
		sync.Mutex
		first, last uint64 // 0, 0: none
	}
	// syncErr, once set, is the error of a failed fsync. It fails the
	// batches committed since (syncFailed) and refuses every later append:
	// after a failed fsync the kernel may have dropped the pages it could
	// not write, so nothing committed since can be acknowledged as durable.
	syncErr atomic.Pointer[error]

	// syncFile and commitTx run the WAL's fsync and the COMMIT. They are
	// fields only so that the fault tests can make either fail or wait.
	syncFile func(*os.File) error
	commitTx func(context.Context) error
}

// committed is a batch committed and waiting for its fsync.
type committed struct {
	batch   []*appendRequest
	replies []appendReply
	events  int
	// first and last are the positions the batch wrote (0, 0: none).
	first, last uint64
	start       time.Time // of its transaction, for the commit metric
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
		syncFile:    (*os.File).Sync,
	}
	w.commitTx = w.execCommit
	if s.cfg.Sync == SyncFull {
		w.synced = make(chan *committed, syncQueue)
		w.syncStopped = make(chan struct{})
		w.syncWake = make(chan struct{}, 1)
		w.linger = maxCommitWindow
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
	if w.wal != nil {
		errs = append(errs, w.wal.Close())
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
// commits them in one transaction, replies (with SyncFull, through the
// syncer), and repeats until the store closes. Appends queued while a commit
// runs wait in the queue and form the next batch.
func (w *writer) run() {
	stopped := w.s.stopped
	if w.synced != nil {
		// The syncer answers the last batches after the writer's loop ends:
		// the store has stopped only once it has.
		stopped = make(chan struct{})
		go w.syncBehind()
		defer func() {
			close(w.synced)
			<-w.syncStopped
			close(w.s.stopped)
		}()
	}
	// callers is about how many callers are appending concurrently now: the
	// previous batch, plus the appends waiting for their fsync then.
	callers := 0
	groupcommit.Serve(w.requests, w.s.done, stopped, func(req *appendRequest, timer *time.Timer) {
		w.gather(req, callers, timer)
		callers = len(w.batch) + int(w.inFlight.Load())
		if len(w.batch) > 0 {
			w.commit()
		}
	})
}

// gather makes the batch: req, every append queued behind it, and, while
// more are known to be on their way, those arriving within a short window
// (maxLinger, or maxCommitWindow with SyncFull).
//
// Callers answered by the last commit are still on their way back with their
// next append. Waiting a moment for them makes batches as large as the
// concurrency, instead of a large batch followed by many tiny ones, each of
// which costs a transaction. Callers whose appends wait for an fsync
// (SyncFull) cannot come back before it, so the writer waits only for the
// others, and commits as soon as they are all back, while the fsync runs;
// when the fsync ends, its callers count again. Under load the callers so
// settle into two cohorts, one committing while the other's fsync runs. A
// lone caller never waits: the previous batch held one append, and it is
// that append's caller who is back.
func (w *writer) gather(req *appendRequest, callers int, timer *time.Timer) {
	w.batch = w.batch[:0]
	w.events = 0
	more := func() bool { return len(w.batch)+int(w.inFlight.Load()) < callers }
	groupcommit.Gather(w.requests, req, w.add, w.full, more, w.linger, timer, w.syncWake)
}

// full reports whether the batch reached a group-commit limit.
func (w *writer) full() bool {
	return len(w.batch) >= maxBatchAppends || w.events >= maxBatchEvents
}

// add puts a request the writer took into the batch.
func (w *writer) add(req *appendRequest) {
	w.batch = append(w.batch, req)
	w.events += len(req.events)
}

// commit writes the batch in one transaction. Each append is checked against
// its stream as left by the appends before it in the batch; one that fails
// writes nothing and does not affect the others. An error of the database
// itself fails the whole batch. With SyncFull the batch goes to the syncer,
// which answers it after the fsync.
func (w *writer) commit() {
	ctx := context.Background()
	start := time.Now()
	w.replies = w.replies[:0]
	if errp := w.syncErr.Load(); errp != nil {
		w.fail(fmt.Errorf("%w: sqlite %s: append not written: an fsync of the WAL failed (%v), and the store takes no appends until it is reopened",
			eventstore.ErrUnavailable, w.s.path, *errp))
		return
	}
	var first uint64
	marked := false
	err := func() error {
		if _, err := w.stmts.begin.ExecContext(ctx); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		if err := w.syncWithFile(ctx); err != nil {
			return err
		}
		first = w.head + 1
		now := time.Now().UTC()
		for _, req := range w.batch {
			res, appendErr, err := w.apply(ctx, req, now)
			if err != nil {
				return fmt.Errorf("append to stream %q: %w", req.stream, err)
			}
			w.replies = append(w.replies, appendReply{res: res, err: appendErr})
		}
		// Readers must not see the batch's positions before their fsync:
		// mark them before the COMMIT makes them visible.
		if w.synced != nil && w.head >= first {
			w.unsynced.Lock()
			if w.unsynced.first == 0 {
				w.unsynced.first = first
			}
			w.unsynced.last = w.head
			w.unsynced.Unlock()
			marked = true
		}
		if err := w.commitTx(ctx); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	}()
	if err != nil {
		// Whatever the transaction did is undone; forget what the writer
		// learned inside it.
		w.stmts.rollback.ExecContext(ctx)
		w.forget()
		if marked {
			// Unmark this batch only: the syncer may have cleared the
			// batches before it meanwhile, and they must stay visible.
			w.unsynced.Lock()
			if w.unsynced.first >= first {
				w.unsynced.first, w.unsynced.last = 0, 0
			} else {
				w.unsynced.last = first - 1
			}
			w.unsynced.Unlock()
		}
		w.s.cfg.Logger.Error("sqlite event store: group commit failed", "path", w.s.path,
			"appends", len(w.batch), "error", err)
		w.fail(fmt.Errorf("%w: sqlite %s: %v", eventstore.ErrUnavailable, w.s.path, err))
		return
	}
	w.commits.Add(1)
	c := &committed{batch: w.batch, replies: w.replies, events: w.events, start: start}
	if w.head >= first {
		c.first, c.last = first, w.head
	}
	if w.synced == nil {
		w.answer(c, time.Since(start))
		return
	}
	// The syncer owns the slices now.
	w.batch, w.replies = make([]*appendRequest, 0, cap(w.batch)), make([]appendReply, 0, cap(w.replies))
	w.inFlight.Add(int64(len(c.batch)))
	w.synced <- c
}

// execCommit commits the open transaction.
func (w *writer) execCommit(ctx context.Context) error {
	_, err := w.stmts.commit.ExecContext(ctx)
	return err
}

// fail answers every append of the batch with err.
func (w *writer) fail(err error) {
	for _, req := range w.batch {
		req.Answer(eventstore.AppendResult{}, err)
	}
}

// answer answers the callers of a committed (and, with SyncFull, synced)
// batch and wakes the store's readers.
func (w *writer) answer(c *committed, took time.Duration) {
	w.s.metrics.Committed(len(c.batch), c.events, took)
	for i, req := range c.batch {
		req.Answer(c.replies[i].res, c.replies[i].err)
	}
	if c.last != 0 {
		w.s.notifyCommit()
		w.s.wantCheckpoint()
	}
}

// syncBehind is the syncer goroutine of SyncFull. The writer commits with
// synchronous=NORMAL, which writes a transaction's pages to the WAL without
// an fsync, and hands the batch over; the syncer takes every batch committed
// so far, fsyncs the WAL once for all of them, and only then answers their
// callers. An fsync begun after a batch's COMMIT returned covers the batch's
// WAL frames, so every acknowledgment still follows the fsync of its events,
// as with synchronous=FULL; but the writer commits the next batch while the
// disk syncs the last one, instead of waiting for it, and one fsync covers
// every batch committed meanwhile. Readers of the store do not see the
// positions of a batch before its fsync (Store.head).
//
// A failed fsync fails the batches it covered and every later append
// (syncErr): the outcome of those appends is unknown, and the store must be
// reopened.
//
// When the batches waiting hold less than half the appends the last fsync
// answered, those callers are on their way back and the writer is about to
// commit their next appends: the syncer waits for that batch, within as long
// as the last fsync took and at most maxSyncWait, so that a few stragglers
// do not take an fsync of their own while everyone else waits behind it.
func (w *writer) syncBehind() {
	defer close(w.syncStopped)
	var group []*committed
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var answered int            // appends the last fsync answered
	var lastFsync time.Duration // how long it took
	for c := range w.synced {
		group = append(group[:0], c)
		pending := len(c.batch)
	drain:
		for {
			select {
			case c, ok := <-w.synced:
				if !ok {
					break drain
				}
				group = append(group, c)
				pending += len(c.batch)
			default:
				break drain
			}
		}
		if wait := min(lastFsync, maxSyncWait); 2*pending < answered && wait > 0 {
			timer.Reset(wait)
		window:
			for 2*pending < answered {
				select {
				case c, ok := <-w.synced:
					if !ok {
						break window
					}
					group = append(group, c)
					pending += len(c.batch)
				case <-timer.C:
					break window
				}
			}
			timer.Stop()
		}
		start := time.Now()
		err := w.fsyncWAL()
		lastFsync, answered = time.Since(start), pending
		var last uint64
		for _, c := range group {
			last = max(last, c.last)
		}
		w.unsynced.Lock()
		if last != 0 && err == nil {
			if w.unsynced.last <= last {
				w.unsynced.first, w.unsynced.last = 0, 0
			} else {
				w.unsynced.first = last + 1
			}
		}
		w.unsynced.Unlock()
		now := time.Now()
		for _, c := range group {
			w.inFlight.Add(-int64(len(c.batch)))
			if err != nil {
				for _, req := range c.batch {
					req.Answer(eventstore.AppendResult{}, err)
				}
				continue
			}
			w.answer(c, now.Sub(c.start))
		}
		clear(group)
		select {
		case w.syncWake <- struct{}{}:
		default:
		}
	}
}

// fsyncWAL fsyncs the WAL file, opening it the first time. Once an fsync
// failed, it fails for good: the batches it is asked to cover were
// committed, and may or may not be durable.
func (w *writer) fsyncWAL() error {
	if errp := w.syncErr.Load(); errp != nil {
		return w.syncFailed(*errp)
	}
	var err error
	if w.wal == nil {
		// The writer's connection keeps the WAL open (and SQLite never
		// deletes it while a connection is open), so this is the file
		// SQLite writes to for the store's life.
		w.wal, err = os.Open(w.s.path + "-wal")
	}
	if err == nil {
		err = w.syncFile(w.wal)
	}
	if err != nil {
		w.s.cfg.Logger.Error("sqlite event store: fsync of the WAL failed; appends fail until the store is reopened",
			"path", w.s.path, "error", err)
		w.syncErr.Store(&err)
		return w.syncFailed(err)
	}
	return nil
}

// syncFailed is the answer to appends committed and not covered by an fsync
// because an fsync failed with err.
func (w *writer) syncFailed(err error) error {
	return fmt.Errorf("%w: sqlite %s: fsync of the WAL: %v; the appends since the last fsync may or may not be durable",
		eventstore.ErrUnavailable, w.s.path, err)
}

// unsyncedFrom returns the first position this writer committed that no
// fsync covers yet, 0 when every commit is synced.
func (w *writer) unsyncedFrom() uint64 {
	if w.synced == nil {
		return 0
	}
	w.unsynced.Lock()
	defer w.unsynced.Unlock()
	return w.unsynced.first
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

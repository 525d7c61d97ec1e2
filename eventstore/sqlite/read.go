package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/google/uuid"
)

// Reads fetch the log in pages, each page one short query on a pooled
// read-only connection that is released before any record is yielded, so a
// slow consumer holds no connection and memory stays flat.
const (
	pageRecords = 1000
	// pageBytes ends a page early when its records carry this much data, so
	// that a page of large events stays small.
	pageBytes = 4 << 20
	// minPoll is the first wait of a caught-up subscription before it looks for
	// records written by another process; it doubles up to PollInterval.
	minPoll = time.Millisecond
)

type readStmts struct {
	head, streamByName, streamPage, logPage *sql.Stmt
}

func (r *readStmts) prepare(ctx context.Context, db *sql.DB) error {
	for _, p := range []struct {
		stmt **sql.Stmt
		sql  string
	}{
		{&r.head, "SELECT coalesce(max(position), 0) FROM events"},
		{&r.streamByName, "SELECT id FROM streams WHERE name = ?"},
		// The stream's row joined to its events from a version: no row means
		// no stream, one row of NULL events (position 0) means no events from
		// that version, so one query answers both.
		{&r.streamPage, `SELECT coalesce(e.position, 0), coalesce(e.version, 0), coalesce(e.id, x''),
				coalesce(e.type, ''), coalesce(e.recorded_at, 0), e.correlation_id, e.causation_id, e.headers,
				coalesce(e.data, x'')
			FROM streams s LEFT JOIN events e ON e.stream = s.id AND e.version >= ?
			WHERE s.name = ? ORDER BY e.version LIMIT ?`},
		// CROSS JOIN keeps events as the outer loop: a range scan of the rowid.
		{&r.logPage, `SELECT e.position, e.version, e.id, e.type, e.recorded_at,
				e.correlation_id, e.causation_id, e.headers, e.data, s.name
			FROM events e CROSS JOIN streams s ON s.id = e.stream
			WHERE e.position > ? AND e.position <= ? ORDER BY e.position LIMIT ?`},
	} {
		stmt, err := db.PrepareContext(ctx, p.sql)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", p.sql, err)
		}
		*p.stmt = stmt
	}
	return nil
}

func (r *readStmts) close() error {
	var errs []error
	for _, stmt := range []*sql.Stmt{r.head, r.streamByName, r.streamPage, r.logPage} {
		if stmt != nil {
			errs = append(errs, stmt.Close())
		}
	}
	return errors.Join(errs...)
}

// ReadStream implements eventstore.Store. Each page is one query, which also
// tells a missing stream from one with nothing after from, so reading the few
// events a caller has not seen yet costs one query.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		if s.closed.Load() {
			yield(eventstore.Record{}, eventstore.ErrClosed)
			return
		}
		next := max(from, 1)
		var page []eventstore.Record
		sc := newScanner()
		for first := true; ; first = false {
			var more, exists bool
			var err error
			page, more, exists, err = s.streamPage(ctx, sc, stream, next, page[:0])
			if err != nil {
				yield(eventstore.Record{}, s.readError(ctx, err, fmt.Sprintf("read stream %q from version %d", stream, next)))
				return
			}
			if first && !exists {
				yield(eventstore.Record{}, fmt.Errorf("%w: %q", eventstore.ErrStreamNotFound, stream))
				return
			}
			for _, rec := range page {
				if !yield(rec, nil) {
					return
				}
			}
			if !more {
				return
			}
			next = page[len(page)-1].Version + 1
			if err := ctx.Err(); err != nil {
				yield(eventstore.Record{}, err)
				return
			}
		}
	}
}

// streamPage reads a page of stream from version from. more reports that the
// page was cut short by its bounds, so that more events may follow; exists
// that the stream exists.
func (s *Store) streamPage(ctx context.Context, sc *scanner, stream string, from uint64, page []eventstore.Record) (_ []eventstore.Record, more, exists bool, err error) {
	// No version reaches past MaxInt64; clamping still asks whether the
	// stream exists, so a missing one is ErrStreamNotFound from any version.
	from = min(from, math.MaxInt64)
	rows, err := s.reads.streamPage.QueryContext(ctx, int64(from), stream, pageRecords)
	if err != nil {
		return page, false, false, err
	}
	defer rows.Close()
	size, n := 0, 0
	for rows.Next() {
		exists = true
		rec := eventstore.Record{StreamID: stream}
		err := sc.scan(rows, &rec, false)
		if errors.Is(err, errNoRecord) {
			break
		}
		if err != nil {
			return page, false, exists, err
		}
		size += len(rec.Data)
		page = append(page, rec)
		if n++; size >= pageBytes {
			return page, true, exists, rows.Err()
		}
	}
	return page, n == pageRecords, exists, rows.Err()
}

// ReadAll implements eventstore.Store.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		if s.closed.Load() {
			yield(eventstore.Record{}, eventstore.ErrClosed)
			return
		}
		head, err := s.head(ctx)
		if err != nil {
			yield(eventstore.Record{}, s.readError(ctx, err, "read all: head"))
			return
		}
		next := after.Commit
		var page []eventstore.Record
		sc := newScanner()
		for next < head {
			page, err = s.logPage(ctx, sc, next, head, page[:0])
			if err != nil {
				yield(eventstore.Record{}, s.readError(ctx, err, fmt.Sprintf("read all after %d", next)))
				return
			}
			if len(page) == 0 {
				return
			}
			for _, rec := range page {
				if !yield(rec, nil) {
					return
				}
			}
			next = page[len(page)-1].Position.Commit
			if err := ctx.Err(); err != nil {
				yield(eventstore.Record{}, err)
				return
			}
		}
	}
}

// logPage reads records with positions in (after, upTo].
func (s *Store) logPage(ctx context.Context, sc *scanner, after, upTo uint64, page []eventstore.Record) ([]eventstore.Record, error) {
	if after >= math.MaxInt64 {
		return page, nil
	}
	rows, err := s.reads.logPage.QueryContext(ctx, int64(after), int64(min(upTo, math.MaxInt64)), pageRecords)
	if err != nil {
		return page, err
	}
	defer rows.Close()
	size := 0
	for size < pageBytes && rows.Next() {
		var rec eventstore.Record
		if err := sc.scan(rows, &rec, true); err != nil {
			return page, err
		}
		size += len(rec.Data)
		page = append(page, rec)
	}
	return page, rows.Err()
}

// scanner reads records from rows of the page queries. It shares the strings
// that repeat from record to record (type and stream names) instead of
// allocating them for each one.
type scanner struct {
	strings                                          map[string]string
	position, version, recordedAt                    int64
	id, typ, correlation, causation, headers, stream sql.RawBytes
	dest                                             []any
}

// errNoRecord is what scan returns for the row of a stream with no events
// from the version asked: positions start at 1.
var errNoRecord = errors.New("no record")

// maxInterned bounds a scanner's shared strings; past it they start over.
const maxInterned = 4096

func newScanner() *scanner {
	sc := &scanner{strings: map[string]string{}}
	sc.dest = []any{&sc.position, &sc.version, &sc.id, &sc.typ, &sc.recordedAt,
		&sc.correlation, &sc.causation, &sc.headers, nil, &sc.stream}
	return sc
}

// scan reads the columns position, version, id, type, recorded_at,
// correlation_id, causation_id, headers, data and, when withStream, the
// stream name.
func (sc *scanner) scan(rows *sql.Rows, rec *eventstore.Record, withStream bool) error {
	sc.dest[8] = &rec.Data
	dest := sc.dest
	if !withStream {
		dest = dest[:9]
	}
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	if sc.position == 0 {
		return errNoRecord
	}
	rec.Position = eventstore.SeqPosition(uint64(sc.position))
	rec.Version = uint64(sc.version)
	rec.RecordedAt = time.Unix(0, sc.recordedAt).UTC()
	rec.Type = sc.intern(sc.typ)
	if withStream {
		rec.StreamID = sc.intern(sc.stream)
	}
	rec.Metadata.CorrelationID = string(sc.correlation)
	rec.Metadata.CausationID = string(sc.causation)
	var err error
	if rec.ID, err = uuid.FromBytes(sc.id); err != nil {
		return fmt.Errorf("record at position %d: event id: %w", sc.position, err)
	}
	if len(sc.headers) > 0 {
		if err := json.Unmarshal(sc.headers, &rec.Metadata.Headers); err != nil {
			return fmt.Errorf("record at position %d: headers: %w", sc.position, err)
		}
	}
	return nil
}

func (sc *scanner) intern(b []byte) string {
	if s, ok := sc.strings[string(b)]; ok {
		return s
	}
	if len(sc.strings) >= maxInterned {
		clear(sc.strings)
	}
	s := string(b)
	sc.strings[s] = s
	return s
}

// Subscribe implements eventstore.Store. It reads the log in pages until it
// has caught up, then waits: an append through this Store wakes it at once;
// appends by other processes are found by polling, first after 1ms, then at
// doubling intervals up to Config.PollInterval, so they are seen within about
// PollInterval. It ends with ctx's error, or eventstore.ErrClosed on Close.
func (s *Store) Subscribe(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		next := after.Commit
		wait := minPoll
		var page []eventstore.Record
		sc := newScanner()
		var timer *time.Timer
		defer func() {
			if timer != nil {
				timer.Stop()
			}
		}()
		for {
			if s.closed.Load() {
				yield(eventstore.Record{}, eventstore.ErrClosed)
				return
			}
			if err := ctx.Err(); err != nil {
				yield(eventstore.Record{}, err)
				return
			}
			// Taken before reading, so a commit that lands after the read still
			// wakes us.
			notify := s.notifyChan()
			var err error
			page, err = s.logPage(ctx, sc, next, math.MaxInt64, page[:0])
			if err != nil {
				yield(eventstore.Record{}, s.readError(ctx, err, fmt.Sprintf("subscribe after %d", next)))
				return
			}
			page = s.dropUnsynced(page)
			if len(page) > 0 {
				for _, rec := range page {
					if !yield(rec, nil) {
						return
					}
				}
				next = page[len(page)-1].Position.Commit
				wait = minPoll
				continue
			}
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-ctx.Done():
			case <-s.done:
			case <-notify:
				wait = minPoll
			case <-timer.C:
				wait = min(2*wait, s.cfg.PollInterval)
			}
			timer.Stop()
		}
	}
}

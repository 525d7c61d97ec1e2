package postgres

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"net"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/eventline/eventline/eventstore"
)

// Reads fetch the log in pages, each page one query on a pooled connection
// that is released before any record is yielded, so a slow consumer holds no
// connection and memory stays flat.
const (
	// pageBytes ends a page early when its records carry this much data, so
	// that a page of large events stays small.
	pageBytes = 4 << 20
	// maxRetryWait bounds the back-off of a subscription waiting for the
	// server to come back.
	maxRetryWait = 2 * time.Second
)

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		if s.closed.Load() {
			yield(eventstore.Record{}, eventstore.ErrClosed)
			return
		}
		// A name no append accepts names no stream; PostgreSQL would refuse
		// some of them (invalid UTF-8) with an error of its own.
		if err := eventstore.ValidateStreamID(stream); err != nil {
			yield(eventstore.Record{}, err)
			return
		}
		next := max(from, 1)
		var page []eventstore.Record
		for first := true; ; first = false {
			if err := ctx.Err(); err != nil {
				yield(eventstore.Record{}, err)
				return
			}
			var more, exists bool
			var err error
			page, more, exists, err = s.streamPage(ctx, stream, next, page[:0])
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
		}
	}
}

// streamPage reads a page of stream from version from. more reports that the
// page was cut short by its bounds; exists that the stream exists.
func (s *Store) streamPage(ctx context.Context, stream string, from uint64, page []eventstore.Record) (_ []eventstore.Record, more, exists bool, err error) {
	from = min(from, math.MaxInt64)
	rows, err := s.pool.Query(ctx, s.sql.streamPage, stream, int64(from), s.cfg.PageSize)
	if err != nil {
		return page, false, false, err
	}
	defer rows.Close()
	var sc scanner
	size, n := 0, 0
	for rows.Next() {
		exists = true
		rec := eventstore.Record{StreamID: stream}
		if err := sc.scan(rows, &rec, nil); err != nil {
			return page, false, exists, err
		}
		if rec.Position.IsZero() { // the stream's row, without events from `from`
			break
		}
		size += len(rec.Data)
		page = append(page, rec)
		if n++; size >= pageBytes {
			return page, true, exists, rows.Err()
		}
	}
	return page, n == s.cfg.PageSize, exists, rows.Err()
}

// ReadAll implements eventstore.Store. While the caller consumes a page, the
// next one is already being read (one page ahead, no more), so the server's
// work on a page overlaps the caller's on the one before.
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
		if next >= head {
			return
		}
		lr := s.newLogReader()
		page, err := s.logPage(ctx, lr, next, head, nil)
		var spare []eventstore.Record
		for {
			if err != nil {
				yield(eventstore.Record{}, s.readError(ctx, err, fmt.Sprintf("read all after %d", next)))
				return
			}
			if len(page) == 0 {
				return
			}
			next = page[len(page)-1].Position.Commit
			// The prefetch goroutine is owned by this loop, which receives
			// its page before it reads another or returns.
			var ahead chan pageResult
			if next < head && ctx.Err() == nil {
				ahead = make(chan pageResult, 1)
				go func(buf []eventstore.Record) {
					p, err := s.logPage(ctx, lr, next, head, buf)
					ahead <- pageResult{p, err}
				}(spare[:0])
			}
			for _, rec := range page {
				if !yield(rec, nil) {
					if ahead != nil {
						<-ahead
					}
					return
				}
			}
			if ahead == nil {
				if err := ctx.Err(); err != nil && next < head {
					yield(eventstore.Record{}, err)
				}
				return
			}
			r := <-ahead
			spare, page, err = page, r.page, r.err
			if err == nil {
				err = ctx.Err()
			}
		}
	}
}

// pageResult is a page read ahead by ReadAll.
type pageResult struct {
	page []eventstore.Record
	err  error
}

// logPage reads records with positions in (after, upTo], at most a page.
func (s *Store) logPage(ctx context.Context, lr *logReader, after, upTo uint64, page []eventstore.Record) ([]eventstore.Record, error) {
	if after >= math.MaxInt64 || after >= upTo {
		return page, nil
	}
	rows, err := s.pool.Query(ctx, s.sql.logPage, int64(after), s.cfg.PageSize)
	if err != nil {
		return page, err
	}
	defer rows.Close()
	lr.streams = lr.streams[:0]
	raw := lr.binary(rows.FieldDescriptions())
	size := 0
	for size < pageBytes && rows.Next() {
		var rec eventstore.Record
		var stream int64
		if raw {
			err = lr.decode(rows.RawValues(), &rec, &stream)
		} else {
			err = lr.sc.scan(rows, &rec, &stream)
		}
		if err != nil {
			return page, err
		}
		if rec.Position.Commit > upTo {
			break
		}
		size += len(rec.Data)
		page = append(page, rec)
		lr.streams = append(lr.streams, stream)
	}
	if err := rows.Err(); err != nil {
		return page, err
	}
	rows.Close()
	return page, lr.name(ctx, page)
}

// logReader is the state one ReadAll or Subscribe keeps across pages. The
// log gives streams as ids; it names them from a cache of its own, asking the
// server only for ids it has not seen, and it shares the strings that repeat
// (stream names, event types) among records, so that a page allocates little
// beyond its records' own data.
type logReader struct {
	s       *Store
	names   map[int64]string
	types   map[string]string
	streams []int64 // of the page's records
	missing []int64
	sc      scanner
}

// Bounds of a logReader's caches; past them a cache starts afresh.
const (
	maxCachedNames = 1 << 16
	maxCachedTypes = 1 << 10
)

func (s *Store) newLogReader() *logReader {
	return &logReader{s: s, names: map[int64]string{}, types: map[string]string{}}
}

// binary reports whether the page's columns come in binary format, which
// decode reads; with the simple protocol they come as text, and scan reads
// them.
func (lr *logReader) binary(fds []pgconn.FieldDescription) bool {
	if len(fds) != 10 {
		return false
	}
	for i, fd := range fds {
		// Text columns (type, correlation_id, causation_id) read the same
		// in either format.
		if fd.Format != pgx.BinaryFormatCode && i != 3 && i != 5 && i != 6 {
			return false
		}
	}
	return true
}

// pgEpoch is PostgreSQL's timestamp epoch, 2000-01-01 UTC, in Unix
// microseconds.
const pgEpoch = 946_684_800_000_000

// decode reads a row of logPage in binary format: position, version, id,
// type, recorded_at, correlation_id, causation_id, headers, data, stream.
func (lr *logReader) decode(v [][]byte, rec *eventstore.Record, stream *int64) error {
	if len(v) != 10 || len(v[0]) != 8 || len(v[1]) != 8 || len(v[2]) != 16 || len(v[4]) != 8 || len(v[9]) != 8 {
		return errors.New("postgres: unexpected row shape in the log")
	}
	rec.Position = eventstore.SeqPosition(binary.BigEndian.Uint64(v[0]))
	rec.Version = binary.BigEndian.Uint64(v[1])
	copy(rec.ID[:], v[2])
	typ, ok := lr.types[string(v[3])]
	if !ok {
		if len(lr.types) >= maxCachedTypes {
			clear(lr.types)
		}
		typ = string(v[3])
		lr.types[typ] = typ
	}
	rec.Type = typ
	rec.RecordedAt = time.UnixMicro(int64(binary.BigEndian.Uint64(v[4])) + pgEpoch).UTC()
	rec.Metadata.CorrelationID = string(v[5])
	rec.Metadata.CausationID = string(v[6])
	if len(v[7]) > 0 {
		if err := json.Unmarshal(v[7], &rec.Metadata.Headers); err != nil {
			return fmt.Errorf("record at position %d: headers: %w", rec.Position.Commit, err)
		}
	}
	rec.Data = make([]byte, len(v[8]))
	copy(rec.Data, v[8])
	*stream = int64(binary.BigEndian.Uint64(v[9]))
	return nil
}

// name sets the StreamID of the page's records, asking the server for the
// names of streams it has not seen yet.
func (lr *logReader) name(ctx context.Context, page []eventstore.Record) error {
	recs := page[len(page)-len(lr.streams):]
	lr.missing = lr.missing[:0]
	for _, id := range lr.streams {
		if _, ok := lr.names[id]; !ok {
			lr.missing = append(lr.missing, id)
		}
	}
	if len(lr.missing) > 0 {
		if len(lr.names)+len(lr.missing) > maxCachedNames {
			clear(lr.names)
			lr.missing = lr.missing[:0]
			lr.missing = append(lr.missing, lr.streams...)
		}
		slices.Sort(lr.missing)
		lr.missing = slices.Compact(lr.missing)
		rows, err := lr.s.pool.Query(ctx, lr.s.sql.streamNames, lr.missing)
		if err != nil {
			return err
		}
		var id int64
		var name string
		if _, err := pgx.ForEachRow(rows, []any{&id, &name}, func() error {
			lr.names[id] = name
			return nil
		}); err != nil {
			return err
		}
	}
	for i, id := range lr.streams {
		name, ok := lr.names[id]
		if !ok {
			return fmt.Errorf("postgres: record at position %d: stream %d has no name", recs[i].Position.Commit, id)
		}
		recs[i].StreamID = name
	}
	return nil
}

// scanner reads records from the rows of the page queries.
type scanner struct {
	position, version int64
	headers           []byte
	dest              []any
}

// scan reads the columns position, version, id, type, recorded_at,
// correlation_id, causation_id, headers, data and, when stream is not nil,
// the stream's id. A row of a stream without events has position 0.
func (sc *scanner) scan(rows pgx.Rows, rec *eventstore.Record, stream *int64) error {
	if sc.dest == nil {
		sc.dest = make([]any, 10)
	}
	id := (*[16]byte)(&rec.ID)
	sc.headers = sc.headers[:0]
	sc.dest = append(sc.dest[:0], &sc.position, &sc.version, id, &rec.Type, &rec.RecordedAt,
		&rec.Metadata.CorrelationID, &rec.Metadata.CausationID, &sc.headers, &rec.Data)
	if stream != nil {
		sc.dest = append(sc.dest, stream)
	}
	if err := rows.Scan(sc.dest...); err != nil {
		return err
	}
	rec.Position = eventstore.SeqPosition(uint64(sc.position))
	rec.Version = uint64(sc.version)
	rec.RecordedAt = rec.RecordedAt.UTC()
	if len(sc.headers) > 0 {
		if err := json.Unmarshal(sc.headers, &rec.Metadata.Headers); err != nil {
			return fmt.Errorf("record at position %d: headers: %w", sc.position, err)
		}
	}
	return nil
}

// Subscribe implements eventstore.Store. It reads the log in pages until it
// has caught up, then waits for a commit: one through this Store wakes it at
// once, one by another process through LISTEN/NOTIFY. Should a notification
// be lost (the listening connection broke), it reads the log anyway after
// Config.PollInterval. While the server cannot be reached it retries with
// back-off, logging once per outage, and resumes after the last record it
// yielded. It ends with ctx's error, eventstore.ErrClosed on Close, or an
// error the server gives that retrying cannot cure.
func (s *Store) Subscribe(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		next := after.Commit
		var page []eventstore.Record
		lr := s.newLogReader()
		var timer *time.Timer
		defer func() {
			if timer != nil {
				timer.Stop()
			}
		}()
		retryWait, failing := time.Duration(0), false
		for {
			if s.closed.Load() {
				yield(eventstore.Record{}, eventstore.ErrClosed)
				return
			}
			if err := ctx.Err(); err != nil {
				yield(eventstore.Record{}, err)
				return
			}
			s.startListener()
			// Taken before reading, so a commit that lands after the read still
			// wakes us.
			notify := s.notifyChan()
			var err error
			page, err = s.logPage(ctx, lr, next, math.MaxInt64, page[:0])
			wait := s.cfg.PollInterval
			switch {
			case err != nil && (ctx.Err() != nil || s.closed.Load() || !isTransient(err)):
				yield(eventstore.Record{}, s.readError(ctx, err, fmt.Sprintf("subscribe after %d", next)))
				return
			case err != nil:
				if !failing {
					s.cfg.Logger.Warn("postgres event store: subscription cannot read; retrying",
						"after", next, "error", err)
				}
				failing = true
				retryWait = min(max(2*retryWait, 10*time.Millisecond), maxRetryWait)
				wait, notify = retryWait, nil
			case failing:
				s.cfg.Logger.Info("postgres event store: subscription reads again", "after", next)
				failing, retryWait = false, 0
			}
			if len(page) > 0 {
				for _, rec := range page {
					if !yield(rec, nil) {
						return
					}
				}
				next = page[len(page)-1].Position.Commit
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
			case <-timer.C:
			}
			timer.Stop()
		}
	}
}

// isTransient reports an error after which the same request may succeed once
// the server is back: the connection failed or the server is shutting down,
// starting up or out of connections.
func isTransient(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "08": // connection exception
			return true
		case "57": // operator intervention: shutdown, crash recovery
			return pe.Code != "57014" // query_canceled is not the server's state
		}
		return pe.Code == "53300" // too_many_connections
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || pgconn.SafeToRetry(err) ||
		pgconn.Timeout(err)
}

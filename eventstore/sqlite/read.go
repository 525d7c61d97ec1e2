package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math"
	"strconv"
	"strings"
	"sync"
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
	head, streamByName, streamPage, logPage, streamNames, streamRange *sql.Stmt
	// names caches stream names by id for log pages, which read the id
	// only: a stream's name never changes, and joining every record to
	// its stream cost the reads a B-tree search and a text column each.
	names nameCache
}

// maxNames bounds the stream names a Store keeps; past it the cache starts
// over, so a log of many streams costs one look-up query per page.
const maxNames = 1 << 16

// nameCache is a Store's stream names by id. Safe for concurrent use.
type nameCache struct {
	mu sync.RWMutex
	m  map[int64]string
	// max is maxNames, smaller in tests.
	max int
}

func (c *nameCache) get(id int64) (string, bool) {
	c.mu.RLock()
	name, ok := c.m[id]
	c.mu.RUnlock()
	return name, ok
}

func (c *nameCache) put(id int64, name string) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= cmp.Or(c.max, maxNames) {
		c.m = make(map[int64]string, 1024)
	}
	c.m[id] = name
	c.mu.Unlock()
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
		// A range scan of the rowid; the stream's id, not its name (see
		// nameCache). Every column read costs the driver two or three
		// calls, each taking the connection's mutex, so the page reads
		// the record's bytes as one text (id, type, correlation and
		// causation ids, headers and data, in that order) and their
		// lengths packed two to an integer: seven columns instead of
		// ten (see scanLog). SQLite's
		// | and << bind alike, left to right: hence the parentheses.
		{&r.logPage, `SELECT position, version, recorded_at, stream,
				octet_length(type) | (coalesce(octet_length(correlation_id), 0) << 31),
				coalesce(octet_length(causation_id), 0) | (coalesce(octet_length(headers), 0) << 31),
				CASE octet_length(id) WHEN 16 THEN id END || type || coalesce(correlation_id, '') ||
					coalesce(causation_id, '') || coalesce(headers, '') || data
			FROM events WHERE position > ? AND position <= ? ORDER BY position LIMIT ?`},
		// The names of the streams a page found no name for, in one query:
		// the parameter is a JSON array of stream ids.
		{&r.streamNames, `SELECT id, name FROM streams WHERE id IN (SELECT value FROM json_each(?))`},
		// A run of stream ids: streams are numbered as they are created,
		// so the records of a page mostly belong to streams created
		// together, and the names of those after them are the next pages'.
		{&r.streamRange, `SELECT id, name FROM streams WHERE id >= ? AND id < ?`},
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
	for _, stmt := range []*sql.Stmt{r.head, r.streamByName, r.streamPage, r.logPage, r.streamNames, r.streamRange} {
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
		err := sc.scan(rows, &rec)
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

// ReadAll implements eventstore.Store. While the caller takes a page, the
// next one is read on another goroutine (see readAhead).
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
		ra := s.newReadAhead(ctx)
		defer ra.stop()
		next := after.Commit
		if next >= head {
			return
		}
		ra.start(next, head)
		for {
			page, more, err := ra.wait()
			if err != nil {
				yield(eventstore.Record{}, s.readError(ctx, err, fmt.Sprintf("read all after %d", next)))
				return
			}
			if len(page) == 0 {
				return
			}
			next = page[len(page)-1].Position.Commit
			if more && next < head {
				ra.start(next, head)
			}
			for _, rec := range page {
				if !yield(rec, nil) {
					return
				}
			}
			if !more || next >= head {
				return
			}
			if err := ctx.Err(); err != nil {
				yield(eventstore.Record{}, err)
				return
			}
		}
	}
}

// readAhead reads log pages one ahead of their consumer: start begins
// reading a page on a goroutine, wait returns it. Two page buffers
// alternate, so the page being yielded is never the one being read. The
// goroutine is stop's to end: it cancels the read and waits for it.
type readAhead struct {
	s       *Store
	ctx     context.Context
	cancel  context.CancelFunc
	sc      *scanner
	bufs    [2][]eventstore.Record
	cur     int
	pending chan pageRead // nil: no read under way
}

type pageRead struct {
	page []eventstore.Record
	more bool
	err  error
}

func (s *Store) newReadAhead(ctx context.Context) *readAhead {
	ctx, cancel := context.WithCancel(ctx)
	return &readAhead{s: s, ctx: ctx, cancel: cancel, sc: newScanner()}
}

// start reads the page of records in (after, upTo] into the buffer that
// the last wait did not return.
func (r *readAhead) start(after, upTo uint64) {
	r.cur = 1 - r.cur
	buf := r.bufs[r.cur][:0]
	ch := make(chan pageRead, 1)
	r.pending = ch
	go func() {
		page, more, err := r.s.logPage(r.ctx, r.sc, after, upTo, buf)
		ch <- pageRead{page, more, err}
	}()
}

// wait returns the page start began reading; more reports that it was cut
// short by its bounds, so that more records may follow.
func (r *readAhead) wait() ([]eventstore.Record, bool, error) {
	res := <-r.pending
	r.pending = nil
	r.bufs[r.cur] = res.page
	return res.page, res.more, res.err
}

// stop ends a read under way and waits for its goroutine.
func (r *readAhead) stop() {
	r.cancel()
	if r.pending != nil {
		<-r.pending
		r.pending = nil
	}
}

// logPage reads records with positions in (after, upTo]. more reports that
// the page ended at its size bounds, so that records may follow.
func (s *Store) logPage(ctx context.Context, sc *scanner, after, upTo uint64, page []eventstore.Record) (_ []eventstore.Record, more bool, err error) {
	if after >= math.MaxInt64 {
		return page, false, nil
	}
	rows, err := s.reads.logPage.QueryContext(ctx, int64(after), int64(min(upTo, math.MaxInt64)), pageRecords)
	if err != nil {
		return page, false, err
	}
	defer rows.Close()
	sc.streams = sc.streams[:0]
	size, n := 0, 0
	for size < pageBytes && rows.Next() {
		var rec eventstore.Record
		if err := sc.scanLog(rows, &rec); err != nil {
			return page, false, err
		}
		size += len(rec.Data)
		page = append(page, rec)
		n++
	}
	if err := rows.Err(); err != nil {
		return page, false, err
	}
	if err := rows.Close(); err != nil {
		return page, false, err
	}
	if err := s.nameStreams(ctx, sc, page[len(page)-n:]); err != nil {
		return page, false, err
	}
	return page, n == pageRecords || size >= pageBytes, nil
}

// nameRun is how many stream ids from the lowest a page misses nameStreams
// loads at once, when the ids it misses are within such a run.
const nameRun = 4096

// nameStreams sets the StreamID of page's records from the stream ids scan
// left in sc.streams, loading the names the cache lacks in one query: the
// run of nameRun ids from the lowest one missing when they all fall in it
// (a catch-up then costs a query every few pages), else just those.
func (s *Store) nameStreams(ctx context.Context, sc *scanner, page []eventstore.Record) error {
	lo, hi, missing := int64(math.MaxInt64), int64(math.MinInt64), 0
	for i, id := range sc.streams {
		if name, ok := s.reads.names.get(id); ok {
			page[i].StreamID = name
			continue
		}
		lo, hi, missing = min(lo, id), max(hi, id), missing+1
	}
	if missing == 0 {
		return nil
	}
	var rows *sql.Rows
	var err error
	if hi-lo < nameRun {
		rows, err = s.reads.streamRange.QueryContext(ctx, lo, lo+nameRun)
	} else {
		ids := append(sc.ids[:0], '[')
		for i, id := range sc.streams {
			if page[i].StreamID == "" {
				if len(ids) > 1 {
					ids = append(ids, ',')
				}
				ids = strconv.AppendInt(ids, id, 10)
			}
		}
		sc.ids = append(ids, ']')
		rows, err = s.reads.streamNames.QueryContext(ctx, string(sc.ids))
	}
	if err != nil {
		return err
	}
	defer rows.Close()
	// found, not the cache, names the page: the cache may start over
	// while it is filled.
	found := make(map[int64]string, missing)
	for rows.Next() {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			return err
		}
		s.reads.names.put(id, name)
		if id <= hi {
			found[id] = name
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for i, id := range sc.streams {
		if page[i].StreamID != "" {
			continue
		}
		name, ok := found[id]
		if !ok {
			return fmt.Errorf("record at position %s: stream %d has no name", page[i].Position, id)
		}
		page[i].StreamID = name
	}
	return nil
}

// scanner reads records from rows of the page queries. It shares the strings
// that repeat from record to record (type and stream names) instead of
// allocating them for each one.
type scanner struct {
	strings                                  map[string]string
	position, version, recordedAt            int64
	id, typ, correlation, causation, headers sql.RawBytes
	dest                                     []any
	// logVals are the columns of a log page's row (scanLog), logDest
	// pointers to them: scanned into an any, a column is the driver's
	// value as it is, where an int64 destination costs database/sql a
	// conversion through reflect.
	logVals [7]any
	logDest []any
	// streams holds the stream ids of a log page's records, in order;
	// ids is the buffer of their JSON array.
	streams []int64
	ids     []byte
}

// errNoRecord is what scan returns for the row of a stream with no events
// from the version asked: positions start at 1.
var errNoRecord = errors.New("no record")

// maxInterned bounds a scanner's shared strings; past it they start over.
const maxInterned = 4096

func newScanner() *scanner {
	sc := &scanner{strings: map[string]string{}}
	sc.dest = []any{&sc.position, &sc.version, &sc.id, &sc.typ, &sc.recordedAt,
		&sc.correlation, &sc.causation, &sc.headers, nil}
	for i := range sc.logVals {
		sc.logDest = append(sc.logDest, &sc.logVals[i])
	}
	return sc
}

// scan reads the columns position, version, id, type, recorded_at,
// correlation_id, causation_id, headers and data.
func (sc *scanner) scan(rows *sql.Rows, rec *eventstore.Record) error {
	sc.dest[8] = &rec.Data
	if err := rows.Scan(sc.dest...); err != nil {
		return err
	}
	if sc.position == 0 {
		return errNoRecord
	}
	rec.Position = eventstore.SeqPosition(uint64(sc.position))
	rec.Version = uint64(sc.version)
	rec.RecordedAt = time.Unix(0, sc.recordedAt).UTC()
	rec.Type = sc.intern(sc.typ)
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

// lenMask takes one length out of a packed pair: the log page packs two
// lengths to an integer, 31 bits each, which SQLite's limit on the size of a
// value (under 2^31 bytes) never exceeds.
const lenMask = 1<<31 - 1

// scanLog reads a row of the log page query: position, version,
// recorded_at, the stream id (appended to sc.streams, which nameStreams
// names), the lengths of type, correlation_id, causation_id and headers
// packed in two integers, and the record's bytes, id (16 bytes) to data,
// as one text. The record keeps nothing of the text: its strings and Data
// are copies (the type interned), so a record holds its bytes once and a
// page is as large as it counts.
func (sc *scanner) scanLog(rows *sql.Rows, rec *eventstore.Record) error {
	if err := rows.Scan(sc.logDest...); err != nil {
		return err
	}
	v := &sc.logVals
	position, ok0 := v[0].(int64)
	version, ok1 := v[1].(int64)
	recordedAt, ok2 := v[2].(int64)
	stream, ok3 := v[3].(int64)
	lens0, ok4 := v[4].(int64)
	lens1, ok5 := v[5].(int64)
	row, ok6 := v[6].(string)
	clear(v[:])
	switch {
	case !(ok0 && ok1 && ok2 && ok3 && ok4 && ok5):
		return fmt.Errorf("log page after position %d: a row of unexpected column types", sc.position)
	case !ok6: // the query makes the text NULL for an id of another size
		return fmt.Errorf("record at position %d: event id: not 16 bytes", position)
	}
	size := len(row)
	sc.position = position
	rec.Position = eventstore.SeqPosition(uint64(position))
	rec.Version = uint64(version)
	rec.RecordedAt = time.Unix(0, recordedAt).UTC()
	sc.streams = append(sc.streams, stream)
	var parts [5]string // id, type, correlation, causation, headers
	for i, n := range [5]int64{16, lens0 & lenMask, lens0 >> 31, lens1 & lenMask, lens1 >> 31} {
		if n > int64(len(row)) {
			return fmt.Errorf("record at position %d: %d bytes, fewer than its columns' lengths", position, size)
		}
		parts[i], row = row[:n], row[n:]
	}
	copy(rec.ID[:], parts[0])
	rec.Type = sc.internString(parts[1])
	// The ids are copied: a substring would keep the whole row, data
	// included, alive for as long as the record's ids live.
	rec.Metadata.CorrelationID = strings.Clone(parts[2])
	rec.Metadata.CausationID = strings.Clone(parts[3])
	if len(parts[4]) > 0 {
		if err := json.Unmarshal([]byte(parts[4]), &rec.Metadata.Headers); err != nil {
			return fmt.Errorf("record at position %d: headers: %w", position, err)
		}
	}
	if len(row) > 0 {
		rec.Data = []byte(row)
	}
	return nil
}

// internString is intern for a string, whose shared copy does not keep
// the text it is part of.
func (sc *scanner) internString(t string) string {
	if s, ok := sc.strings[t]; ok {
		return s
	}
	if len(sc.strings) >= maxInterned {
		clear(sc.strings)
	}
	s := strings.Clone(t)
	sc.strings[s] = s
	return s
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
// While it catches up, the next page is read while the caller takes the
// current one (see readAhead).
func (s *Store) Subscribe(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		next := after.Commit
		wait := minPoll
		ra := s.newReadAhead(ctx)
		defer ra.stop()
		var timer *time.Timer
		defer func() {
			if timer != nil {
				timer.Stop()
			}
		}()
		// notify is taken before a page is read, so a commit that lands
		// after the read still wakes us; read tells whether a read (read
		// ahead or not) is under way.
		var notify <-chan struct{}
		read := false
		for {
			if s.closed.Load() {
				yield(eventstore.Record{}, eventstore.ErrClosed)
				return
			}
			if err := ctx.Err(); err != nil {
				yield(eventstore.Record{}, err)
				return
			}
			if !read {
				notify = s.notifyChan()
				ra.start(next, math.MaxInt64)
			}
			page, more, err := ra.wait()
			read = false
			if err != nil {
				yield(eventstore.Record{}, s.readError(ctx, err, fmt.Sprintf("subscribe after %d", next)))
				return
			}
			page = s.dropUnsynced(page)
			if len(page) > 0 {
				next = page[len(page)-1].Position.Commit
				if more {
					notify = s.notifyChan()
					ra.start(next, math.MaxInt64)
					read = true
				}
				for _, rec := range page {
					if !yield(rec, nil) {
						return
					}
				}
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

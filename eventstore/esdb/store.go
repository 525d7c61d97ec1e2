package esdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/eventline/eventline/eventstore"
	"github.com/google/uuid"
)

// readCount is the count passed to the client's reads: "everything", as the
// official .NET client's default (long.MaxValue). The server streams the
// result under gRPC flow control, so memory stays flat.
const readCount = math.MaxInt64

// Store is an eventstore.Store on EventStoreDB. It is safe for concurrent use.
// Open it with Open; Close it when done.
type Store struct {
	cfg       Config
	clientCfg esdb.Configuration
	addr      string // for messages, without credentials
	prefix    string // Config.StreamPrefix
	log       *slog.Logger

	// ctx is cancelled by Close, which cancels every operation in flight.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	cur    *conn
	// wg counts operations in flight and connection probes; Close waits for it
	// before closing the client, which must not happen under a caller.
	wg sync.WaitGroup
}

// conn is one client and the probe that connected it.
//
// The client (v4.1.0) connects on its first call, in a loop that takes no
// context, and that loop stops for good when discovery fails, after which the
// client only answers "connection is closed". So the store connects with a
// probe in a goroutine of its own that callers wait for under their context,
// and replaces a client whose probe failed with a new one.
type conn struct {
	client *client
	ready  chan struct{} // closed when the probe has finished
	err    error         // the probe's error; read after ready is closed
}

// failed reports a finished probe that did not connect.
func (c *conn) failed() bool {
	select {
	case <-c.ready:
		return c.err != nil
	default:
		return false
	}
}

// client is one esdb.Client and a count of the operations inside it.
//
// When a call fails with "unavailable", the client (v4.1.0) sends a message to
// its connection loop on an unbuffered channel, and the loop's next discovery,
// if it fails, stops the loop for good: a call that sends after that blocks
// for ever, whatever its context. So a probe that may run discovery first
// waits until no operation is inside the client, and no operation enters while
// a probe is pending (see Store.acquire).
type client struct {
	*esdb.Client
	mu   sync.Mutex
	busy int
	idle *sync.Cond
}

func newClient(cfg esdb.Configuration) *client {
	// NewClient never fails in v4.1.0: it only starts the connection loop.
	c, _ := esdb.NewClient(&cfg)
	cl := &client{Client: c}
	cl.idle = sync.NewCond(&cl.mu)
	return cl
}

func (cl *client) enter() {
	cl.mu.Lock()
	cl.busy++
	cl.mu.Unlock()
}

func (cl *client) leave() {
	cl.mu.Lock()
	cl.busy--
	if cl.busy == 0 {
		cl.idle.Broadcast()
	}
	cl.mu.Unlock()
}

// waitIdle waits until no operation is inside the client. Operations end
// promptly once Close cancels them, so Close cannot wait on this for ever.
func (cl *client) waitIdle() {
	cl.mu.Lock()
	for cl.busy > 0 {
		cl.idle.Wait()
	}
	cl.mu.Unlock()
}

var _ eventstore.Store = (*Store)(nil)

// Open returns a Store for the server or cluster named by cfg.URL. It checks
// the configuration but does not contact the server, so that a process can
// start while EventStoreDB is down: the first operation (or Ping) connects,
// and fails with eventstore.ErrUnavailable when the server cannot be reached
// before its context ends or the client's discovery gives up
// (maxDiscoverAttempts × discoveryInterval in the URL, 10 × 100ms by default).
// ctx is accepted for symmetry with the other backends and is not used.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	clientCfg, err := parseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	clientCfg.Logger = clientLogger(cfg.Logger)
	addr := clientCfg.Address
	if addr == "" {
		addr = redact(cfg.URL)
	}
	sctx, cancel := context.WithCancel(context.Background())
	return &Store{
		cfg:       cfg,
		clientCfg: *clientCfg,
		addr:      addr,
		prefix:    cfg.StreamPrefix,
		log:       cfg.Logger.With("component", "eventstore/esdb"),
		ctx:       sctx,
		cancel:    cancel,
	}, nil
}

// dial starts a probe of cl, or of a new client when cl is nil. s.mu is held.
func (s *Store) dial(cl *client) *conn {
	if cl == nil {
		cl = newClient(s.clientCfg)
	}
	c := &conn{client: cl, ready: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		cl.waitIdle()
		// GetServerVersion is the client's one call that only connects.
		_, c.err = cl.GetServerVersion()
		close(c.ready)
	}()
	return c
}

// acquire returns a connected client, connecting first if needed, and a
// release func to call when the operation has left the client.
func (s *Store) acquire(ctx context.Context) (*conn, func(), error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, nil, eventstore.ErrClosed
		}
		c := s.cur
		if c == nil || c.failed() {
			c = s.dial(nil)
			s.cur = c
		}
		s.mu.Unlock()
		select {
		case <-c.ready:
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("%w: connecting to %s: %w", eventstore.ErrUnavailable, s.addr, ctx.Err())
		case <-s.ctx.Done():
			return nil, nil, eventstore.ErrClosed
		}
		if c.err != nil {
			return nil, nil, fmt.Errorf("%w: connecting to %s: %w", eventstore.ErrUnavailable, s.addr, c.err)
		}
		s.mu.Lock()
		switch {
		case s.closed:
			s.mu.Unlock()
			return nil, nil, eventstore.ErrClosed
		case s.cur != c:
			// A probe was started while this one was awaited: wait for it,
			// so as not to be inside the client while it may run discovery.
			s.mu.Unlock()
			continue
		}
		c.client.enter()
		s.wg.Add(1)
		s.mu.Unlock()
		return c, func() { c.client.leave(); s.wg.Done() }, nil
	}
}

// reconnectIfLost makes the next acquire probe the connection again after err
// showed it lost: "unavailable", the one error on which the client itself
// drops its connection, or a client whose loop has stopped. The probe reuses
// the client, whose loop rediscovers the node (the leader, in a cluster); if
// that fails the client is replaced. Slow replies (deadlines) do not count: the
// connection is fine, and a probe would wait for every operation in flight.
func (s *Store) reconnectIfLost(c *conn, err error) {
	if !connectionLost(err) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == c && !s.closed {
		s.cur = s.dial(c.client)
	}
}

// opContext returns a context for one call into the client that ends with ctx
// or with Close.
func (s *Store) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Ping connects to the server if the store is not connected yet. It returns
// an error matching eventstore.ErrUnavailable when the server cannot be
// reached before ctx ends or the client gives up.
func (s *Store) Ping(ctx context.Context) error {
	_, release, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	release()
	return nil
}

// Close cancels every operation in flight (iterators end with
// eventstore.ErrClosed), waits for them and for a connection attempt in
// progress, and closes the client. Calls after Close return ErrClosed; Close
// itself may be called again and returns nil.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	c := s.cur
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	// A client whose probe failed has already stopped its loop; closing it
	// again is useless. Only a connected client holds a gRPC connection.
	if c != nil && c.err == nil {
		return c.client.Client.Close()
	}
	return nil
}

// Append implements eventstore.Store.
//
// The server checks the expected version and applies its own idempotence to
// the event ids. The result's Position is the WriteResult's commit/prepare
// pair, which is the $all position of the last event written (see the package
// documentation); when the server reports no position it is read back.
//
// The server's reply to a repeat is the reply to the write it repeats, so when
// every event's id was the caller's (only then can the append be a repeat) the
// events are read back: Repeated is set when they differ from the ones given.
// A repeat of identical events is reported as a write (Repeated false), which
// it cannot be told from; the stream holds exactly what the caller gave.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, err
	}
	events = slices.Clone(events)
	// Only events whose ids the caller chose can repeat an earlier append:
	// PrepareAppend gives the others fresh ones.
	callerIDs := len(events) > 0 && !slices.ContainsFunc(events, func(e eventstore.Event) bool { return e.ID == uuid.Nil })
	if err := eventstore.PrepareAppend(stream, expected, events, s.cfg.MaxEventSize); err != nil {
		return eventstore.AppendResult{}, err
	}
	data := make([]esdb.EventData, len(events))
	for i, e := range events {
		if strings.HasPrefix(e.Type, "$") {
			// The server reserves '$' types, and the store filters them out of
			// $all: such an event would be written and never read back.
			return eventstore.AppendResult{}, fmt.Errorf("%w: event %d for stream %q: type %q: names starting with '$' are reserved by EventStoreDB",
				eventstore.ErrInvalidEvent, i, stream, e.Type)
		}
		d, err := toEventData(e)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		data[i] = d
	}
	c, release, err := s.acquire(ctx)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	defer release()
	octx, cancel := s.opContext(ctx)
	defer cancel()

	if len(events) == 0 {
		return s.appendNothing(ctx, octx, c, stream, expected)
	}
	wr, err := c.client.AppendToStream(octx, s.prefix+stream, esdb.AppendToStreamOptions{ExpectedRevision: expectedRevision(expected)}, data...)
	if err != nil {
		if classify(err) == kindWrongVer && ctx.Err() == nil {
			return eventstore.AppendResult{}, s.wrongVersion(octx, c, stream, expected, err)
		}
		s.reconnectIfLost(c, err)
		return eventstore.AppendResult{}, s.mapError(ctx, err, fmt.Sprintf("append %d events to stream %q", len(events), stream))
	}
	res := eventstore.AppendResult{
		StreamID:     stream,
		LastVersion:  wr.NextExpectedVersion + 1,
		FirstVersion: wr.NextExpectedVersion + 2 - uint64(len(events)),
		Position:     eventstore.Position{Commit: wr.CommitPosition, Prepare: wr.PreparePosition},
	}
	if callerIDs || res.Position.IsZero() {
		// The server answers a repeat exactly as the write it repeats, so the
		// range is read back: events that differ from the ones given were
		// written by an earlier append (Repeated). The server also answers a
		// repeat whose events it has not yet indexed without a position; the
		// client then reports 0/0, and the read gives the position.
		pos, same, err := s.readBack(octx, c, stream, res.FirstVersion, data)
		if err != nil {
			s.reconnectIfLost(c, err)
			return eventstore.AppendResult{}, s.mapError(ctx, err, fmt.Sprintf("read back stream %q versions %d to %d", stream, res.FirstVersion, res.LastVersion))
		}
		if res.Position.IsZero() {
			res.Position = pos
		}
		res.Repeated = !same
	}
	return res, nil
}

// readBack reads the events of stream from version first that an append of
// sent reported written, and tells whether they are sent's: same ids, types,
// data and metadata bytes. It returns the position of the last one.
func (s *Store) readBack(ctx context.Context, c *conn, stream string, first uint64, sent []esdb.EventData) (eventstore.Position, bool, error) {
	rs, err := c.client.ReadStream(ctx, s.prefix+stream, esdb.ReadStreamOptions{From: esdb.Revision(first - 1)}, uint64(len(sent)))
	if err != nil {
		return eventstore.Start, false, err
	}
	defer rs.Close()
	var pos eventstore.Position
	same := true
	for i := range sent {
		ev, err := recvRead(rs)
		if errors.Is(err, io.EOF) {
			return eventstore.Start, false, fmt.Errorf("esdb: the stream ends after %d of the %d events written", i, len(sent))
		}
		if err != nil {
			return eventstore.Start, false, err
		}
		rec := ev.OriginalEvent()
		same = same && rec.EventID == sent[i].EventID && rec.EventType == sent[i].EventType &&
			bytes.Equal(rec.Data, sent[i].Data) && bytes.Equal(rec.UserMetadata, sent[i].Metadata)
		pos = toPosition(rec.Position)
	}
	return pos, same, nil
}

// appendNothing answers an append of no events without writing: the server
// would report no position and the client a wrong revision for it.
func (s *Store) appendNothing(ctx, octx context.Context, c *conn, stream string, expected eventstore.ExpectedVersion) (eventstore.AppendResult, error) {
	version, pos, err := s.readEvent(octx, c, s.prefix+stream, esdb.End{}, esdb.Backwards)
	if err != nil && !noEvents(err) {
		s.reconnectIfLost(c, err)
		return eventstore.AppendResult{}, s.mapError(ctx, err, fmt.Sprintf("read the version of stream %q", stream))
	}
	if err := expected.Check(stream, version); err != nil {
		return eventstore.AppendResult{}, err
	}
	return eventstore.AppendResult{StreamID: stream, FirstVersion: version, LastVersion: version, Position: pos}, nil
}

// wrongVersion builds the *WrongVersionError for a refused append. The actual
// version comes from the client's message; if that is not in the expected form
// the stream's last event is read.
func (s *Store) wrongVersion(octx context.Context, c *conn, stream string, expected eventstore.ExpectedVersion, cause error) error {
	actual, ok := parseWrongVersion(cause)
	if !ok {
		v, _, err := s.readEvent(octx, c, s.prefix+stream, esdb.End{}, esdb.Backwards)
		if err != nil && !noEvents(err) {
			s.log.Warn("cannot read the version of a stream after a refused append", "stream", stream, "error", err)
		}
		actual = v
	}
	return &eventstore.WrongVersionError{StreamID: stream, Expected: expected, Actual: actual}
}

// errNoEvents is readEvent's answer for a stream that exists but has no
// event to read.
var errNoEvents = errors.New("esdb: no events")

// noEvents reports an error meaning the stream has no events.
func noEvents(err error) bool {
	return errors.Is(err, errNoEvents) || classify(err) == kindNotFound
}

// readEvent reads one event of a stream, returning its version and position;
// a stream with no events gives version 0, Start and a kindNotFound error.
func (s *Store) readEvent(ctx context.Context, c *conn, stream string, from esdb.StreamPosition, dir esdb.Direction) (uint64, eventstore.Position, error) {
	rs, err := c.client.ReadStream(ctx, stream, esdb.ReadStreamOptions{From: from, Direction: dir}, 1)
	if err != nil {
		return 0, eventstore.Start, err
	}
	defer rs.Close()
	ev, err := recvRead(rs)
	if errors.Is(err, io.EOF) {
		// A stream deleted softly reads as empty.
		return 0, eventstore.Start, errNoEvents
	}
	if err != nil {
		return 0, eventstore.Start, err
	}
	rec := ev.OriginalEvent()
	return rec.EventNumber + 1, toPosition(rec.Position), nil
}

// recvRead is ReadStream.Recv without its panic on a reply it does not know
// (v4.1.0 panics "unreachable code"): a newer server's reply must not take
// the process down.
func recvRead(rs *esdb.ReadStream) (ev *esdb.ResolvedEvent, err error) {
	defer func() {
		if r := recover(); r != nil {
			ev, err = nil, fmt.Errorf("esdb: unexpected read reply: %v", r)
		}
	}()
	ev, err = rs.Recv()
	if err == nil && (ev == nil || ev.OriginalEvent() == nil) {
		return nil, errors.New("esdb: read reply without an event")
	}
	return ev, err
}

// ReadStream implements eventstore.Store. Version from maps to revision
// from-1; 0 reads from the start like 1.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		if err := eventstore.ValidateStreamID(stream); err != nil {
			// No event can be in such a stream; '$' streams are the server's.
			yield(eventstore.Record{}, fmt.Errorf("%w: %q: %w", eventstore.ErrStreamNotFound, stream, err))
			return
		}
		what := fmt.Sprintf("read stream %q from version %d", stream, from)
		start := esdb.Revision(max(from, 1) - 1)
		s.read(ctx, what, yield, func(octx context.Context, c *conn) (*esdb.ReadStream, error) {
			return c.client.ReadStream(octx, s.prefix+stream, esdb.ReadStreamOptions{From: start}, readCount)
		}, func(*esdb.RecordedEvent) bool { return true })
	}
}

// ReadAll implements eventstore.Store.
//
// The client's read of $all takes no filter (v4.1.0 always sends "no filter"),
// so system events are skipped here, in Go; Subscribe filters on the server.
// A read from a position includes the record at that position, which is
// skipped too.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		what := fmt.Sprintf("read $all after %s", after)
		s.read(ctx, what, yield, func(octx context.Context, c *conn) (*esdb.ReadStream, error) {
			return c.client.ReadAll(octx, esdb.ReadAllOptions{From: fromPosition(after)}, readCount)
		}, func(ev *esdb.RecordedEvent) bool {
			return s.visible(ev) && after.Before(toPosition(ev.Position))
		})
	}
}

// read runs one forward read and yields the records keep accepts.
func (s *Store) read(ctx context.Context, what string, yield func(eventstore.Record, error) bool,
	open func(context.Context, *conn) (*esdb.ReadStream, error), keep func(*esdb.RecordedEvent) bool) {
	c, release, err := s.acquire(ctx)
	if err != nil {
		yield(eventstore.Record{}, err)
		return
	}
	defer release()
	octx, cancel := s.opContext(ctx)
	defer cancel()
	rs, err := open(octx, c)
	if err != nil {
		s.reconnectIfLost(c, err)
		yield(eventstore.Record{}, s.mapError(ctx, err, what))
		return
	}
	defer rs.Close()
	for {
		ev, err := recvRead(rs)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			s.reconnectIfLost(c, err)
			yield(eventstore.Record{}, s.mapError(ctx, err, what))
			return
		}
		rec := ev.OriginalEvent()
		if keep(rec) && !yield(s.record(rec), nil) {
			return
		}
	}
}

// Head implements eventstore.Store: the position of the last record that
// ReadAll and Subscribe would yield, found by reading $all backwards past the
// server's own events.
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	return s.lastWhere(ctx, s.visible)
}

// visible reports whether an event of $all belongs to the store: not a
// system event, and in a stream with the store's prefix.
func (s *Store) visible(ev *esdb.RecordedEvent) bool {
	return !isSystem(ev) && strings.HasPrefix(ev.StreamID, s.prefix)
}

// record maps an event of one of the store's streams to a Record, with the
// stream id the caller knows.
func (s *Store) record(ev *esdb.RecordedEvent) eventstore.Record {
	rec := toRecord(ev)
	rec.StreamID = strings.TrimPrefix(rec.StreamID, s.prefix)
	return rec
}

// lastWhere returns the position of the last event of $all that keep accepts,
// or Start when there is none.
func (s *Store) lastWhere(ctx context.Context, keep func(*esdb.RecordedEvent) bool) (eventstore.Position, error) {
	c, release, err := s.acquire(ctx)
	if err != nil {
		return eventstore.Start, err
	}
	defer release()
	octx, cancel := s.opContext(ctx)
	defer cancel()
	rs, err := c.client.ReadAll(octx, esdb.ReadAllOptions{From: esdb.End{}, Direction: esdb.Backwards}, readCount)
	if err != nil {
		s.reconnectIfLost(c, err)
		return eventstore.Start, s.mapError(ctx, err, "read the head of $all")
	}
	defer rs.Close()
	for {
		ev, err := recvRead(rs)
		if errors.Is(err, io.EOF) {
			return eventstore.Start, nil
		}
		if err != nil {
			s.reconnectIfLost(c, err)
			return eventstore.Start, s.mapError(ctx, err, "read the head of $all")
		}
		if rec := ev.OriginalEvent(); keep(rec) {
			return toPosition(rec.Position), nil
		}
	}
}

package command

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/retry"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the OpenTelemetry instrumentation scope of the Handler's spans.
const ScopeName = "github.com/eventline/eventline/command"

// Defaults for Config fields left zero.
const (
	DefaultMaxAttempts = 10
	DefaultMinBackoff  = time.Millisecond
	DefaultMaxBackoff  = 100 * time.Millisecond
)

// Config configures a Handler. Every field but Name has a usable zero value.
type Config struct {
	// Name is the kind of entity the decider handles. It names the streams:
	// Name "cart" and entity id "42" give stream "cart-42". Required: 1 to
	// MaxNameLen bytes of [A-Za-z0-9._~-].
	Name string
	// MaxAttempts bounds how many times Handle loads, decides and appends when
	// appends keep meeting concurrent writes to the same stream. After the last
	// attempt Handle returns an error matching ErrConflict. 0 means
	// DefaultMaxAttempts.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the pause before a retry: before retry n
	// Handle waits a random time in [0, 2d] with d = MinBackoff·2ⁿ⁻¹, never
	// more than MaxBackoff ("full jitter"), so that writers that collided do
	// not collide again in lockstep.
	// 0 means DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives a debug line per retry. nil means slog.Default().
	Logger *slog.Logger
	// CacheSize bounds the state cache, in streams: the Handler keeps the
	// folded state of the CacheSize most recently used streams, so that a
	// command reads only the events appended since the stream's previous
	// command instead of the whole stream. 0 means DefaultCacheSize.
	CacheSize int
	// NoCache turns the state cache off: every command reads and folds its
	// whole stream.
	NoCache bool
	// Registerer, when set, receives the eventline_command_* metrics of the
	// Handler, labelled with Name (docs/metrics.md). Handlers of several
	// entities share one set of collectors.
	Registerer prometheus.Registerer
	// TracerProvider gives Handle its spans: "handle <Name>" around the
	// command and "append <Name>" around its append. The handle span's W3C
	// trace context is written into every appended event's headers
	// (eventstore.HeaderTraceparent), so that the projections, the relay and
	// the consumers of the events continue the trace. nil means
	// otel.GetTracerProvider(), the global provider, which does nothing (and
	// writes no header) unless the program set one.
	TracerProvider trace.TracerProvider
}

// Validate reports a Config that NewHandler would refuse. The error matches
// ErrInvalidConfig (and ErrInvalidID for a bad Name).
func (c Config) Validate() error {
	if err := validateName("Config.Name", c.Name, MaxNameLen); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	switch {
	case c.MaxAttempts < 0:
		return fmt.Errorf("%w: Config.MaxAttempts is %d, must be ≥ 0", ErrInvalidConfig, c.MaxAttempts)
	case c.MinBackoff < 0 || c.MaxBackoff < 0:
		return fmt.Errorf("%w: Config.MinBackoff and MaxBackoff must be ≥ 0", ErrInvalidConfig)
	case c.CacheSize < 0:
		return fmt.Errorf("%w: Config.CacheSize is %d, must be ≥ 0", ErrInvalidConfig, c.CacheSize)
	case c.MaxBackoff > 0 && c.MinBackoff > c.MaxBackoff:
		return fmt.Errorf("%w: Config.MinBackoff %v exceeds MaxBackoff %v", ErrInvalidConfig, c.MinBackoff, c.MaxBackoff)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	return c
}

// Result says what handling a command did.
type Result[E any] struct {
	// StreamID is the stream of the entity, e.g. "cart-42".
	StreamID string
	// Version is the stream's version after the command's events; when the
	// command decided no events, the stream's version as loaded (0: no stream).
	Version uint64
	// Position is the global position of the command's last event; a projection
	// that has reached it reflects the command. When the command decided no
	// events, it is the position of the stream's last event (Start: no stream).
	Position eventstore.Position
	// Events are the events the command wrote, or nil. For a repeated
	// command (WithID) they are the events the store holds for it, decoded,
	// whichever Handler wrote them.
	Events []E
}

// Handler handles the commands of one kind of entity: it loads the entity's
// stream, folds it with the decider, decides, and appends the new events with
// the loaded version as expectation, retrying on concurrent writes. It keeps
// the folded states of recently used streams in memory (Config.CacheSize). It
// is safe for concurrent use and holds nothing that needs closing.
type Handler[S, C, E any] struct {
	store    eventstore.Store
	registry *eventstore.Registry
	decider  Decider[S, C, E]
	cfg      Config
	locks    streamLocks
	cache    *stateCache[S] // nil: Config.NoCache
	metrics  *metrics       // nil: no Config.Registerer
	tracer   trace.Tracer
	// handleSpan and appendSpan are the spans' names, made once.
	handleSpan, appendSpan string
}

// NewHandler returns a Handler that keeps the entities of decider in store,
// encoding and decoding events with registry, in which every concrete event type
// of E must be registered (as a value type, since Registry.Decode returns
// values).
func NewHandler[S, C, E any](store eventstore.Store, registry *eventstore.Registry, decider Decider[S, C, E], cfg Config) (*Handler[S, C, E], error) {
	switch {
	case store == nil:
		return nil, fmt.Errorf("%w: NewHandler: nil store", ErrInvalidConfig)
	case registry == nil:
		return nil, fmt.Errorf("%w: NewHandler: nil registry", ErrInvalidConfig)
	case decider.Initial == nil || decider.Decide == nil || decider.Evolve == nil:
		return nil, fmt.Errorf("%w: NewHandler: the decider needs Initial, Decide and Evolve", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &Handler[S, C, E]{store: store, registry: registry, decider: decider, cfg: cfg.withDefaults()}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	h.tracer = tp.Tracer(ScopeName)
	h.handleSpan, h.appendSpan = "handle "+h.cfg.Name, "append "+h.cfg.Name
	if !cfg.NoCache {
		h.cache = newStateCache[S](h.cfg.CacheSize)
	}
	if cfg.Registerer != nil {
		m, err := newMetrics(cfg.Registerer, cfg.Name)
		if err != nil {
			return nil, fmt.Errorf("command: metrics: %w", err)
		}
		h.metrics = m
	}
	return h, nil
}

// StreamID returns the stream that holds entity id's events, or an error
// matching ErrInvalidID.
func (h *Handler[S, C, E]) StreamID(id string) (string, error) {
	if err := ValidateID(id); err != nil {
		return "", err
	}
	return h.cfg.Name + "-" + id, nil
}

// Handle applies cmd to entity id: it loads the entity's stream (a stream that
// does not exist is the decider's initial state), folds it, decides, and appends
// the decided events expecting the version it loaded. When another writer got
// there first it reloads and decides again, up to Config.MaxAttempts times.
// Concurrent calls for the same entity on one Handler take turns, so that they
// do not conflict with each other; they still may with other processes. With
// the state cache on (the default), "loads" means reading only the events
// after the cached state's version: see the package documentation.
//
// A decision of no events writes nothing and succeeds. An error from Decide is
// returned as a *RejectedError that unwraps to it; other errors come from the
// store or the registry, or match ErrInvalidID, ErrConflict or
// ErrIdempotencyConflict.
//
// When ctx carries a command id (WithID) the command is idempotent: see the
// package documentation. Metadata from ctx (WithMetadata, CausedBy) is written
// onto every event.
func (h *Handler[S, C, E]) Handle(ctx context.Context, id string, cmd C) (res Result[E], err error) {
	return h.handle(ctx, id, cmd, false)
}

// HandleNew is Handle for a command that creates its entity: the caller
// expects the stream not to exist yet (a cart opened under an id its client
// chose, say). When the Handler has no state cached for the stream, its first
// attempt decides on the decider's initial state without reading the stream,
// and appends expecting no stream at all, saving the read of an empty stream
// that would find nothing. The store checks the guess: if the stream exists
// after all, the append is refused and the command is handled as Handle
// handles it, at once (the miss is neither a conflict nor a retry: no pause,
// no attempt counted). A decision on the initial state that is a refusal or
// no events is not trusted either: it is made again on the stream as read.
// The answer is always the one Handle gives; only the cost of a wrong guess
// (one refused append) differs, so use it where the entity is nearly always
// new.
func (h *Handler[S, C, E]) HandleNew(ctx context.Context, id string, cmd C) (res Result[E], err error) {
	return h.handle(ctx, id, cmd, true)
}

func (h *Handler[S, C, E]) handle(ctx context.Context, id string, cmd C, assumeNew bool) (res Result[E], err error) {
	if h.metrics != nil {
		start := time.Now()
		defer func() { h.metrics.observe(cmd, start, err) }()
	}
	ctx, span := h.tracer.Start(ctx, h.handleSpan)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("eventline.command.type", commandType(cmd)),
			attribute.String("eventline.entity.id", id))
		defer func() { endSpan(span, err, res) }()
	} else {
		defer span.End()
	}
	stream, err := h.StreamID(id)
	if err != nil {
		return Result[E]{}, err
	}
	key := IDFrom(ctx)
	if err := validateCommandID(key); err != nil {
		return Result[E]{}, err
	}
	var hash string
	if key != "" {
		hash = commandHash(cmd)
	}
	md := h.metadata(ctx, key, hash)
	var pause *retry.Backoff
	for attempt := 1; ; attempt++ {
		if err := h.locks.lock(ctx, stream); err != nil {
			return Result[E]{}, err
		}
		res, guessed, err := h.attempt(ctx, stream, key, hash, md, cmd, assumeNew)
		h.locks.unlock(stream)
		if err == nil || !retryable(err, key) {
			return res, err
		}
		if guessed {
			// HandleNew's guess of a new stream was wrong: read it now.
			assumeNew = false
			attempt--
			continue
		}
		h.metrics.conflict(attempt < h.cfg.MaxAttempts)
		if attempt >= h.cfg.MaxAttempts {
			return Result[E]{}, fmt.Errorf("%w: stream %q: gave up after %d attempts: %w", ErrConflict, stream, attempt, err)
		}
		h.cfg.Logger.DebugContext(ctx, "command: concurrent write, retrying",
			"stream", stream, "attempt", attempt, "error", err)
		if pause == nil {
			pause = retry.New(h.cfg.MinBackoff, h.cfg.MaxBackoff, retry.FullJitter)
		}
		if retry.Sleep(ctx, pause.Next()) != nil {
			return Result[E]{}, context.Cause(ctx)
		}
	}
}

// retryable reports whether reloading may let the command through: another
// writer appended first, or (for an idempotent command) a concurrent handling of
// the same command id wrote its events first at another version, which the
// reload will find.
func retryable(err error, key string) bool {
	return errors.Is(err, eventstore.ErrWrongVersion) ||
		key != "" && errors.Is(err, eventstore.ErrDuplicateEvent)
}

// metadata is what every event of one Handle call carries.
func (h *Handler[S, C, E]) metadata(ctx context.Context, key, hash string) eventstore.Metadata {
	md := MetadataFrom(ctx)
	if md.CorrelationID == "" {
		md.CorrelationID = key
		if key == "" {
			md.CorrelationID = uuid.NewString()
		}
	}
	if md.CausationID == "" {
		md.CausationID = key
	}
	if trace.SpanContextFromContext(ctx).IsValid() {
		if md.Headers == nil {
			md.Headers = make(map[string]string, 4)
		}
		traceContext.Inject(ctx, propagation.MapCarrier(md.Headers))
	}
	if key != "" {
		if md.Headers == nil {
			md.Headers = make(map[string]string, 2)
		}
		md.Headers[HeaderCommandID] = key
		if hash != "" {
			md.Headers[HeaderCommandHash] = hash
		} else {
			delete(md.Headers, HeaderCommandHash)
		}
	}
	return md
}

// traceContext writes the W3C headers eventstore.HeaderTraceparent and
// eventstore.HeaderTracestate.
var traceContext propagation.TraceContext

// endSpan ends Handle's span with what the command came to.
func endSpan[E any](span trace.Span, err error, res Result[E]) {
	if err != nil {
		outcome := Outcome(err)
		span.SetAttributes(attribute.String("eventline.outcome", outcome))
		span.RecordError(err)
		switch outcome {
		case OutcomeRejected, OutcomeInvalid, OutcomeIdempotencyConflict:
			// The caller's mistake or the domain's refusal, answered as
			// such: not a failure of the handler.
		default:
			span.SetStatus(codes.Error, outcome)
		}
	} else {
		span.SetAttributes(attribute.String("eventline.outcome", Outcome(nil)),
			attribute.String("eventline.stream", res.StreamID),
			attribute.Int64("eventline.version", int64(res.Version)),
			attribute.String("eventline.position", res.Position.String()),
			attribute.Int("eventline.events", len(res.Events)))
	}
	span.End()
}

// attempt is one load-fold-decide-append, made while holding the stream's
// turn. It takes the stream's cache entry (or starts from the initial state),
// reads only the events after the entry's version and folds them on, decides
// and appends. The entry goes back into the cache only when all of that
// succeeded: after any error, the state may be half-applied (Evolve may
// mutate it in place) or stale, and the next attempt reloads the stream.
//
// A cached entry is trusted without reading the stream when the decision
// yields events: the append expects the entry's version, so if another writer
// moved the stream on, the store refuses the append and the next attempt
// reloads. A refusal or a decision of no events cannot be checked that way, so
// those are made again after reading what the stream gained. With assumeNew
// (HandleNew) a stream with no cached entry is trusted the same way to be
// empty; guessed then reports that the attempt appended on that guess, so
// that a refusal is read as a wrong guess rather than a concurrent write.
func (h *Handler[S, C, E]) attempt(ctx context.Context, stream, key, hash string, md eventstore.Metadata, cmd C, assumeNew bool) (res Result[E], guessed bool, err error) {
	e := h.takeEntry(stream, key)
	guessed = assumeNew && e.version == 0
	trusted := e.version > 0 || guessed
	if !trusted {
		if res, done, err := h.catchUpOrRepeat(ctx, &e, key, hash); done {
			return res, false, err
		}
	} else if prior, ok := e.commands[key]; key != "" && ok {
		res, err := h.repeated(ctx, e, key, hash, prior, nil)
		return res, false, err
	}

	decided, err := h.decider.Decide(e.state, cmd)
	if trusted && (err != nil || len(decided) == 0) {
		guessed = false
		if res, done, err := h.catchUpOrRepeat(ctx, &e, key, hash); done {
			return res, false, err
		}
		decided, err = h.decider.Decide(e.state, cmd)
	}
	res, err = h.write(ctx, e, key, hash, md, decided, err)
	return res, guessed, err
}

// write answers the decision decided (or the refusal err) on e: it appends
// the decided events expecting e's version.
func (h *Handler[S, C, E]) write(ctx context.Context, e *entry[S], key, hash string, md eventstore.Metadata, decided []E, err error) (Result[E], error) {
	stream := e.stream
	if err != nil {
		return Result[E]{}, &RejectedError{StreamID: stream, Err: err}
	}
	if len(decided) == 0 {
		h.putEntry(e)
		return Result[E]{StreamID: stream, Version: e.version, Position: e.position}, nil
	}
	events := make([]eventstore.Event, len(decided))
	for i, d := range decided {
		ev, err := h.registry.Encode(d)
		if err != nil {
			return Result[E]{}, fmt.Errorf("command: stream %q: event %d: %w", stream, i, err)
		}
		if key != "" {
			ev.ID = eventID(stream, key, i)
		}
		ev.Metadata = md
		events[i] = ev
	}
	appendStart := time.Now()
	var res eventstore.AppendResult
	if !trace.SpanFromContext(ctx).IsRecording() {
		// Tracing off (or this command not sampled): no span to start.
		res, err = h.store.Append(ctx, stream, eventstore.Exact(e.version), events...)
	} else {
		actx, span := h.tracer.Start(ctx, h.appendSpan)
		res, err = h.store.Append(actx, stream, eventstore.Exact(e.version), events...)
		span.SetAttributes(attribute.String("eventline.stream", stream), attribute.Int("eventline.events", len(events)))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "append failed")
		} else {
			span.SetAttributes(attribute.String("eventline.position", res.Position.String()))
		}
		span.End()
	}
	h.metrics.appended(appendStart)
	if err != nil {
		return Result[E]{}, fmt.Errorf("command: append to stream %q: %w", stream, err)
	}
	if res.Repeated {
		return h.storedRepeat(ctx, e, key, hash, res)
	}
	h.advance(e, events, key, res)
	return Result[E]{StreamID: stream, Version: res.LastVersion, Position: res.Position, Events: decided}, nil
}

// storedRepeat answers an append the store took for a repeat: the events with
// these ids were written before, by this command id on some Handler, maybe for
// another command (a replica whose cache was behind decided on an old state),
// so the decided events are neither the answer nor folded into the cache.
// Instead e catches up with what the stream holds, and the command is answered
// as any repeat: the stored Result, or ErrIdempotencyConflict when the stored
// events were written for another command.
func (h *Handler[S, C, E]) storedRepeat(ctx context.Context, e *entry[S], key, hash string, res eventstore.AppendResult) (Result[E], error) {
	if key != "" {
		if r, done, err := h.catchUpOrRepeat(ctx, &e, key, hash); done {
			return r, err
		}
	}
	// The stream holds the events' ids without this command id on them (an
	// unkeyed command's ids are random, so only another writer reusing them
	// gets here): they are not this command's events, and its own were not
	// written. e is dropped; the next command reloads.
	return Result[E]{}, fmt.Errorf("%w: stream %q: the store took the append of command id %q for a repeat of versions %d to %d, which are not that command's events",
		ErrIdempotencyConflict, e.stream, key, res.FirstVersion, res.LastVersion)
}

// advance folds the events just appended onto e and puts e back into the
// cache, so that the stream's next command finds nothing new to read. It folds
// the events as the registry decodes them from their encoded form, exactly as
// a reload would see them, not the decided values, which may differ from what
// the codec gives back. When the append's versions are not the ones e expects
// (the store recognised a repeat written by someone else) or an event does not
// decode, e is dropped instead, and the next command reloads the stream.
func (h *Handler[S, C, E]) advance(e *entry[S], events []eventstore.Event, key string, res eventstore.AppendResult) {
	if h.cache == nil {
		return
	}
	n := uint64(len(events))
	if res.FirstVersion != e.version+1 || res.LastVersion != e.version+n {
		return
	}
	decoded := make([]E, len(events))
	for i, ev := range events {
		var err error
		if decoded[i], err = h.decode(eventstore.Record{Event: ev, StreamID: e.stream,
			Version: res.FirstVersion + uint64(i), Position: res.Position}); err != nil {
			return
		}
	}
	for i, d := range decoded {
		if key != "" {
			e.remember(key, events[i].Metadata.Headers[HeaderCommandHash], res.FirstVersion+uint64(i), res.Position)
		}
		e.state = h.decider.Evolve(e.state, d)
	}
	e.version, e.position = res.LastVersion, res.Position
	h.cache.put(e)
}

// catchUpOrRepeat brings *e up to date with its stream, reloading from the
// start when the entry no longer fits. done is true when handling ends here:
// on an error, or when the stream already holds command key's events.
func (h *Handler[S, C, E]) catchUpOrRepeat(ctx context.Context, e **entry[S], key, hash string) (Result[E], bool, error) {
	stream := (*e).stream
	found, foundEvents, err := h.catchUp(ctx, *e, key)
	if errors.Is(err, errStaleEntry) {
		*e = h.newEntry(stream)
		found, foundEvents, err = h.catchUp(ctx, *e, key)
	}
	if err != nil {
		return Result[E]{}, true, fmt.Errorf("command: load stream %q: %w", stream, err)
	}
	if key != "" {
		prior, ok := (*e).commands[key]
		if !ok && foundEvents != nil {
			prior, ok = found, true
		}
		if ok {
			res, err := h.repeated(ctx, *e, key, hash, prior, foundEvents)
			return res, true, err
		}
	}
	return Result[E]{}, false, nil
}

// errStaleEntry means a cached entry does not fit the stream as read; the
// stream is reloaded from its start.
var errStaleEntry = errors.New("command: cached state does not fit the stream")

// takeEntry returns stream's cache entry, or a new entry at the initial state
// when there is none, the cache is off, or the command has an id and the
// entry no longer knows every command id of its stream.
func (h *Handler[S, C, E]) takeEntry(stream, key string) *entry[S] {
	if h.cache != nil {
		if e := h.cache.take(stream); e != nil && (key == "" || !e.commandsOverflow) {
			return e
		}
	}
	return h.newEntry(stream)
}

func (h *Handler[S, C, E]) newEntry(stream string) *entry[S] {
	return &entry[S]{stream: stream, state: h.decider.Initial()}
}

func (h *Handler[S, C, E]) putEntry(e *entry[S]) {
	if h.cache != nil {
		h.cache.put(e)
	}
}

// catchUp reads e's stream after e.version and folds it onto e, recording the
// command ids it meets. found and foundEvents are the events of command id
// key among those read (foundEvents is nil if there were none).
func (h *Handler[S, C, E]) catchUp(ctx context.Context, e *entry[S], key string) (found commandRecord, foundEvents []E, err error) {
	cached := e.version > 0
	for rec, err := range h.store.ReadStream(ctx, e.stream, e.version+1) {
		switch {
		case errors.Is(err, eventstore.ErrStreamNotFound) && cached:
			return found, nil, errStaleEntry
		case errors.Is(err, eventstore.ErrStreamNotFound):
			return found, nil, nil
		case err != nil:
			return found, nil, err
		case rec.Version != e.version+1 && cached:
			return found, nil, errStaleEntry
		case rec.Version != e.version+1:
			return found, nil, fmt.Errorf("event at version %d follows version %d", rec.Version, e.version)
		}
		ev, err := h.decode(rec)
		if err != nil {
			return found, nil, err
		}
		if k := rec.Metadata.Headers[HeaderCommandID]; k != "" {
			hash := rec.Metadata.Headers[HeaderCommandHash]
			e.remember(k, hash, rec.Version, rec.Position)
			if k == key {
				if foundEvents == nil {
					found.first = rec.Version
				}
				found.last, found.position, found.hash = rec.Version, rec.Position, hash
				foundEvents = append(foundEvents, ev)
			}
		}
		e.state = h.decider.Evolve(e.state, ev)
		e.version, e.position = rec.Version, rec.Position
	}
	return found, foundEvents, nil
}

// repeated answers a command whose id the stream already holds: with the
// original Result, or ErrIdempotencyConflict when the id came with another
// command. events are the command's events if the last read met them all.
func (h *Handler[S, C, E]) repeated(ctx context.Context, e *entry[S], key, hash string, prior commandRecord, events []E) (Result[E], error) {
	if hash != "" && prior.hash != "" && hash != prior.hash {
		h.putEntry(e)
		return Result[E]{}, fmt.Errorf("%w: command id %q on stream %q (written at version %d)",
			ErrIdempotencyConflict, key, e.stream, prior.last)
	}
	if uint64(len(events)) != prior.last-prior.first+1 {
		// The events were folded into the cached state earlier: read them again.
		events = nil
		for rec, err := range h.store.ReadStream(ctx, e.stream, prior.first) {
			if err != nil {
				return Result[E]{}, fmt.Errorf("command: read command %q of stream %q: %w", key, e.stream, err)
			}
			if rec.Version > prior.last {
				break
			}
			if rec.Metadata.Headers[HeaderCommandID] != key {
				continue
			}
			ev, err := h.decode(rec)
			if err != nil {
				return Result[E]{}, fmt.Errorf("command: read command %q of stream %q: %w", key, e.stream, err)
			}
			events = append(events, ev)
		}
	}
	h.putEntry(e)
	h.metrics.repeat()
	return Result[E]{StreamID: e.stream, Version: prior.last, Position: prior.position, Events: events}, nil
}

func (h *Handler[S, C, E]) decode(rec eventstore.Record) (E, error) {
	v, err := h.registry.Decode(rec)
	if err != nil {
		var zero E
		return zero, err
	}
	e, ok := v.(E)
	if !ok {
		var zero E
		return zero, &eventstore.RecordError{StreamID: rec.StreamID, Version: rec.Version, Position: rec.Position, Type: rec.Type,
			Err: fmt.Errorf("%w: %T is not a %v", eventstore.ErrDecode, v, reflect.TypeFor[E]())}
	}
	return e, nil
}

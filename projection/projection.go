package projection

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

// Projection turns records of the log into writes to a Redis read model.
// Implementations are user code; Define builds one from a function, and
// Router.Projection from one typed handler per event type.
type Projection interface {
	// Name identifies the projection: 1 to query.MaxNameLen bytes of [a-z0-9_-].
	Name() string
	// Version is the schema version of the read model, from 1. Changing what
	// Apply writes means a new version, built beside the old one.
	Version() int
	// Handles lists the event types Apply wants. Records of other types are
	// skipped (and counted) without calling Apply. An empty list means all.
	Handles() []string
	// Apply queues the writes one record causes on tx. It may be called more
	// than once for the same record (a retried batch); only the writes of the
	// attempt that commits take effect, so Apply must have no effect outside tx.
	Apply(ctx context.Context, tx *Tx, rec eventstore.Record) error
}

// Partitioner is implemented by a Projection split into partitions (see
// Partitioned, which makes one). Each partition of a build has its own hash
// tag, checkpoint, lease, status and dead letters (the layout is in package
// query), so its keys may live on any node of a Redis Cluster and its writer
// in any projector process: the runners of a projection share its
// partitions (Runner). A projection that does not implement it, or whose
// Partitions is 1, has today's single partition and key layout.
type Partitioner interface {
	// Partitions is the number of partitions, from 1. It is fixed for a
	// version: changing it means a new version, built beside the old one.
	Partitions() int
	// PartitionKey returns the partition key of rec: every record with the
	// same key is applied by the same partition, in log order, and writes
	// keys of that partition (Tx.Key). The partition is
	// query.PartitionOf(key, Partitions()). Readers route a model key to its
	// partition with the same key (query.View.KeyFor).
	PartitionKey(rec eventstore.Record) string
}

// StreamPartitionKey is the default partition key: the record's stream id,
// so that one stream's records, and the entries they write, stay in one
// partition.
func StreamPartitionKey(rec eventstore.Record) string { return rec.StreamID }

// Partitioned returns p split into n partitions by key (nil means
// StreamPartitionKey). Derive the key from the record so that every record
// that writes a model entry has the same key, and readers can compute it
// from what they look up: a cart's records and the cart's summary both by
// the cart's stream id, say. n < 1 is refused by Validate.
func Partitioned(p Projection, n int, key func(eventstore.Record) string) Projection {
	if key == nil {
		key = StreamPartitionKey
	}
	return &partitioned{Projection: p, n: n, key: key}
}

type partitioned struct {
	Projection
	n   int
	key func(eventstore.Record) string
}

func (p *partitioned) Partitions() int                           { return p.n }
func (p *partitioned) PartitionKey(rec eventstore.Record) string { return p.key(rec) }

// Unwrap returns the projection p splits (Wrapper).
func (p *partitioned) Unwrap() Projection { return p.Projection }

// partitionsOf returns the partition count of p and its partition key function.
func partitionsOf(p Projection) (int, func(eventstore.Record) string) {
	if pp, ok := p.(Partitioner); ok {
		return pp.Partitions(), pp.PartitionKey
	}
	return 1, StreamPartitionKey
}

// MaxPartitions bounds Partitioner.Partitions.
const MaxPartitions = 1024

// ApplyFunc is the signature of Projection.Apply.
type ApplyFunc func(ctx context.Context, tx *Tx, rec eventstore.Record) error

// Define returns a Projection made of its parts. handles lists the event types
// apply wants; none means all.
func Define(name string, version int, apply ApplyFunc, handles ...string) Projection {
	return &defined{name: name, version: version, apply: apply, handles: slices.Clone(handles)}
}

type defined struct {
	name    string
	version int
	apply   ApplyFunc
	handles []string
}

func (d *defined) Name() string      { return d.name }
func (d *defined) Version() int      { return d.version }
func (d *defined) Handles() []string { return d.handles }
func (d *defined) Apply(ctx context.Context, tx *Tx, rec eventstore.Record) error {
	return d.apply(ctx, tx, rec)
}

// Validate checks a projection's name and version.
func Validate(p Projection) error {
	if p == nil {
		return fmt.Errorf("%w: nil projection", ErrInvalidConfig)
	}
	if err := query.ValidateName(p.Name()); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if p.Version() < 1 {
		return fmt.Errorf("%w: projection %q: version %d, must be ≥ 1", ErrInvalidConfig, p.Name(), p.Version())
	}
	if n, _ := partitionsOf(p); n < 1 || n > MaxPartitions {
		return fmt.Errorf("%w: projection %q: %d partitions, must be 1 to %d", ErrInvalidConfig, p.Name(), n, MaxPartitions)
	}
	return nil
}

// Tx is one batch's transaction, handed to Projection.Apply for each record of
// the batch. Writes queued on Pipe are sent in one MULTI/EXEC with the new
// checkpoint, and only if the runner still holds the projection's lease.
//
// Reads (Read) go to Redis at once, on the connection that watches the lease,
// and see every committed batch, because only the lease holder writes the
// model. They do not see the writes queued earlier in the same batch: a
// projection that reads a value and writes it back (a running total kept as
// JSON, say) keeps the value it computed in Memo for the records after it in
// the batch. Redis' own atomic updates (HINCRBY, ZINCRBY, SADD, ...) need
// neither and are the fastest choice.
//
// The write helpers (HSet, HIncrBy, ZIncrBy, Del, ...) are the fast way to
// write: they merge the batch's writes per key and send what is left once,
// before the checkpoint (see HSet). Pipe is for every other command.
type Tx struct {
	name  string
	build query.Build
	part  query.Partition
	pipe  redis.Pipeliner
	read  redis.Cmdable
	memo  map[string]any
	// w is the helpers' pending writes; ctx the context of their first call.
	w   writes
	ctx context.Context
}

// Key returns the key of a read model entry of the build being written:
// "{el:<name>}:v<version>:" (or "{el:<name>}:v<version>g<generation>:" for a
// later generation, see query.Build) followed by parts joined with ':'.
// Build every key of the model with it, never with query.Key, so that a
// forced rebuild writes its own generation. In a partitioned projection the
// key is in the partition applying the record, "{el:<name>:p<i>}:v<b>:..."
// (readers find it with query.View.KeyFor and the record's partition key).
func (tx *Tx) Key(parts ...string) string {
	return query.PartitionKey(tx.name, tx.build, tx.part, parts...)
}

// Partition returns the partition the batch is applied to (the zero
// Partition in an unpartitioned projection).
func (tx *Tx) Partition() query.Partition { return tx.part }

// Pipe returns the pipeline inside MULTI that the batch's writes go to. Queue
// writes only; the replies of queued commands are not known until the batch
// commits, after Apply returns. Pipe first queues the write helpers' pending
// writes, so that what is queued on it comes after them: call Pipe again
// after using a helper rather than keeping the Pipeliner.
func (tx *Tx) Pipe() redis.Pipeliner {
	if len(tx.w.order) > 0 {
		tx.flush(tx.ctx)
	}
	return tx.pipe
}

// Read returns a client for reads that must happen now (GET, HGET, ...). Do
// not write through it: writes outside Pipe are neither atomic with the
// checkpoint nor fenced by the lease.
func (tx *Tx) Read() redis.Cmdable { return tx.read }

// Memo returns the value stored under key by SetMemo earlier in this batch.
// It is the overlay of the batch's own pending writes; see Tx.
func (tx *Tx) Memo(key string) (any, bool) {
	v, ok := tx.memo[key]
	return v, ok
}

// SetMemo remembers v under key for the rest of this batch. The memo is empty
// at the start of every batch and of every retry.
func (tx *Tx) SetMemo(key string, v any) {
	if tx.memo == nil {
		tx.memo = map[string]any{}
	}
	tx.memo[key] = v
}

// Router dispatches records to one typed handler per event type: records are
// decoded with a Registry (upcasters included) and handed to the handler
// registered with Handle. Router.Projection makes it a Projection.
type Router struct {
	reg      *eventstore.Registry
	shared   *SharedDecoding
	handlers map[string]ApplyFunc
	types    []string
}

// NewRouter returns a Router decoding with reg.
func NewRouter(reg *eventstore.Registry) *Router {
	return &Router{reg: reg, shared: newOwnDecoding(reg), handlers: map[string]ApplyFunc{}}
}

// NewSharedRouter returns a Router decoding through d, which the Routers of
// other projections of the same log share: a record is decoded once for all
// of them. Their handlers receive the same event values, so they must not
// modify an event's slices, maps or pointed-to values.
func NewSharedRouter(d *SharedDecoding) *Router {
	return &Router{reg: d.reg, shared: d, handlers: map[string]ApplyFunc{}}
}

// sharedDecodings is how many decoded records a SharedDecoding keeps: the
// runners of one process read the log within a window of each other
// (eventstore.SharedLog keeps them within DefaultSharedWindow records), and
// each decodes up to its read-ahead (twice its BatchSize) before applying.
// A power of two, so that a position's slot is a mask of it.
const sharedDecodings = 16384

// SharedDecoding decodes each record once for the Routers of several
// projections that read the same log (one log: records are known by
// position) in one process, as their runners
// apply the same records at about the same time. It keeps the last
// decoded records by position; a record decoded twice (a runner far behind
// the others) costs only the second decoding. Safe for concurrent use.
type SharedDecoding struct {
	reg *eventstore.Registry
	// own: the decoding of one Router (NewRouter), which keeps only the
	// records decoded ahead of Apply (predecode), each for one Apply, so
	// that a retried batch decodes afresh.
	own bool
	// slots is a direct-mapped cache: a record is kept in the slot of its
	// position (slotOf), replacing whatever was there. Each of the four
	// runners of the sample looks up every record it applies twice (ahead
	// and in Apply); a map behind a mutex cost those look-ups more than a
	// tenth of the runners' CPU, an atomic load of one slot costs next to
	// nothing. Consecutive positions of a single-sequence log take
	// consecutive slots, so the last sharedDecodings records never evict
	// each other.
	slots []atomic.Pointer[decoded]
}

// decoded is the decoding of the record of type typ at pos.
type decoded struct {
	pos eventstore.Position
	typ string
	v   any
}

// NewSharedDecoding returns a SharedDecoding decoding with reg.
func NewSharedDecoding(reg *eventstore.Registry) *SharedDecoding {
	return &SharedDecoding{reg: reg, slots: make([]atomic.Pointer[decoded], sharedDecodings)}
}

// newOwnDecoding returns the decoding of one Router.
func newOwnDecoding(reg *eventstore.Registry) *SharedDecoding {
	d := NewSharedDecoding(reg)
	d.own = true
	return d
}

// slotOf returns the slot of position p: its commit position when its two
// halves are equal (SQLite, memory), mixed with the prepare position when
// not (EventStoreDB).
func (d *SharedDecoding) slotOf(p eventstore.Position) *atomic.Pointer[decoded] {
	h := p.Commit ^ (p.Prepare-p.Commit)*0x9e3779b97f4a7c15
	return &d.slots[h&(sharedDecodings-1)]
}

// of reports whether e is the decoding of rec.
func (e *decoded) of(rec *eventstore.Record) bool {
	return e != nil && e.pos == rec.Position && e.typ == rec.Type
}

// decode returns rec decoded, from the cache when another Router (or
// predecode) decoded it. Errors are not kept: each Router reports its own.
func (d *SharedDecoding) decode(rec eventstore.Record) (any, error) {
	s := d.slotOf(rec.Position)
	if e := s.Load(); e.of(&rec) && (!d.own || s.CompareAndSwap(e, nil)) {
		return e.v, nil
	}
	v, err := d.reg.Decode(rec)
	if err != nil || d.own {
		return v, err
	}
	return d.keep(s, rec, v), nil
}

// predecode decodes rec ahead of Apply, unless it is decoded already, and
// keeps it for decode. A failure is left for Apply to report.
func (d *SharedDecoding) predecode(rec eventstore.Record) {
	s := d.slotOf(rec.Position)
	if s.Load().of(&rec) {
		return
	}
	if v, err := d.reg.Decode(rec); err == nil {
		d.keep(s, rec, v)
	}
}

// keep remembers v as the decoding of rec in its slot s, and returns the
// decoding kept: another one, if another Router kept one first, so that
// the Routers hand their handlers the same value.
func (d *SharedDecoding) keep(s *atomic.Pointer[decoded], rec eventstore.Record, v any) any {
	e := &decoded{pos: rec.Position, typ: rec.Type, v: v}
	for {
		old := s.Load()
		if old.of(&rec) {
			return old.v
		}
		if s.CompareAndSwap(old, e) {
			return v
		}
	}
}

// decode decodes rec, through the shared decoding when there is one.
func (r *Router) decode(rec eventstore.Record) (any, error) {
	if r.shared != nil {
		return r.shared.decode(rec)
	}
	return r.reg.Decode(rec)
}

// Handle routes records whose event decodes to E to fn. E must be registered
// in the Router's Registry; Handle panics otherwise, at start-up.
func Handle[E any](r *Router, fn func(ctx context.Context, tx *Tx, rec eventstore.Record, e E) error) {
	var zero E
	name, ok := r.reg.Name(zero)
	if !ok {
		panic(fmt.Sprintf("projection: Handle: %T is not registered", zero))
	}
	if _, dup := r.handlers[name]; !dup {
		r.types = append(r.types, name)
	}
	r.handlers[name] = func(ctx context.Context, tx *Tx, rec eventstore.Record) error {
		v, err := r.decode(rec)
		if err != nil {
			return err
		}
		e, ok := v.(E)
		if !ok {
			return &eventstore.RecordError{StreamID: rec.StreamID, Version: rec.Version, Position: rec.Position,
				Type: rec.Type, Err: fmt.Errorf("%w: decoded as %T, handler wants %T", eventstore.ErrDecode, v, zero)}
		}
		return fn(ctx, tx, rec, e)
	}
}

// Types returns the event types the Router accepts: those with a handler
// and those added with AcceptTypes. They are the Handles of the Router's
// Projection.
func (r *Router) Types() []string { return slices.Clone(r.types) }

// AcceptTypes adds event types the Router accepts without a handler of
// their own: old type names an upcaster turns into a handled type. Records
// of these types reach Apply (they are in Types), are upcast while decoding
// and go to the handler of the type they become.
func (r *Router) AcceptTypes(types ...string) {
	for _, t := range types {
		if !slices.Contains(r.types, t) {
			r.types = append(r.types, t)
		}
	}
}

// Projection returns the Projection name at version whose Apply is the
// Router's and whose Handles are the Router's Types, read when the runner
// starts: handlers registered after this call count too.
func (r *Router) Projection(name string, version int) Projection {
	return &routed{r: r, name: name, version: version}
}

type routed struct {
	r       *Router
	name    string
	version int
}

func (p *routed) Name() string      { return p.name }
func (p *routed) Version() int      { return p.version }
func (p *routed) Handles() []string { return p.r.Types() }
func (p *routed) Apply(ctx context.Context, tx *Tx, rec eventstore.Record) error {
	return p.r.Apply(ctx, tx, rec)
}

// predecode decodes rec ahead of Apply (see predecoder).
func (p *routed) predecode(rec eventstore.Record) {
	if p.r.shared != nil {
		p.r.shared.predecode(rec)
	}
}

// Apply decodes rec and calls its handler. A record with no handler (after
// upcasting) is an error matching eventstore.ErrUnknownEventType.
func (r *Router) Apply(ctx context.Context, tx *Tx, rec eventstore.Record) error {
	if h, ok := r.handlers[rec.Type]; ok {
		return h(ctx, tx, rec)
	}
	v, err := r.decode(rec)
	if err != nil {
		return err
	}
	name, _ := r.reg.Name(v)
	if h, ok := r.handlers[name]; ok {
		return h(ctx, tx, rec)
	}
	return &eventstore.RecordError{StreamID: rec.StreamID, Version: rec.Version, Position: rec.Position,
		Type: rec.Type, Err: eventstore.ErrUnknownEventType}
}

package eventstore

import (
	"context"
	"iter"
	"sync"
	"time"
)

// Defaults of SharedLogOptions.
const (
	DefaultSharedWindow       = 8192
	DefaultSharedStallTimeout = 5 * time.Second
	// maxSharedChunk bounds the records of one chunk: the unit in which
	// the reader publishes and members advance.
	maxSharedChunk = 256
)

// SharedLogOptions tune a SharedLog.
type SharedLogOptions struct {
	// Window bounds how many records the shared reader may run ahead of the
	// slowest subscriber that shares it. It bounds the memory a SharedLog
	// holds. Default 8192.
	Window int
	// StallTimeout: a subscriber that has taken no record for this long while
	// the shared reader waits for it is dropped from the convoy and reads the
	// log on its own from where it was, so that one stuck consumer never
	// stops the others for longer. Default 5 s.
	StallTimeout time.Duration
}

// SharedLog is a Store whose subscriptions to the log share one reading of
// it. Every other method is the underlying Store's.
//
// Projection runners in one process each subscribe to the whole log; on their
// own, each reads and scans every record. Through a SharedLog, the
// subscriptions that are at the same place form a convoy: one reader pulls
// records from the underlying store and every member takes them from memory.
// It moves at the pace of its slowest member, at most Window records ahead
// of it, so catching up several projections from the start of the log costs
// one read of the log instead of one per projection.
//
// A subscription joins the convoy when its position is the convoy's: at
// once if it starts where the convoy is (or when there is none, starting
// one), or after reading on its own (ReadAll) up to the convoy if it starts
// behind. A subscription that starts ahead of the convoy, or is dropped
// from it for stalling (StallTimeout), reads on its own (Subscribe of the
// underlying store) until it ends. A convoy lasts while it has members: when
// the last one goes, whether its subscription ended or it was dropped, the
// shared reader stops and releases its subscription of the underlying store.
// Whichever way it reads, each subscription sees every record after its
// position exactly once, in order, as the Store contract says; errors of the
// underlying subscription reach every member.
//
// Members receive the same Record values: Data and Metadata.Headers are
// shared between them and must not be modified.
type SharedLog struct {
	Store
	chunk  int // records per chunk
	chunks int // chunks the reader may be ahead of the slowest member
	stall  time.Duration

	mu     sync.Mutex
	convoy *convoy // nil when no subscription shares a reader
}

// NewSharedLog wraps s.
func NewSharedLog(s Store, opts SharedLogOptions) *SharedLog {
	if opts.Window <= 0 {
		opts.Window = DefaultSharedWindow
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = DefaultSharedStallTimeout
	}
	chunk := min(maxSharedChunk, max(1, opts.Window/4))
	return &SharedLog{Store: s, chunk: chunk, chunks: (opts.Window + chunk - 1) / chunk, stall: opts.StallTimeout}
}

// chunk is a run of records read by a convoy's reader. Everything in it but
// recs[:n] of a full chunk may change, and is read and written under
// SharedLog.mu; records once published are never written again.
type chunk struct {
	seq  uint64
	recs []Record // recs[:n] are published
	n    int
	next *chunk
	// final: the reading ended after recs[:n], with err.
	final bool
	err   error
}

// convoy is one shared reading of the log and the subscriptions following it.
// Its fields are guarded by SharedLog.mu.
type convoy struct {
	cancel  context.CancelFunc
	head    *chunk   // the reader's current chunk
	last    Position // position of the last record published (or the start)
	members map[*member]struct{}
	// from is where the convoy started, first its first chunk while the
	// reader is within a Window of it (nil after): a subscription starting
	// at from joins there, so subscriptions started together (runners
	// catching up from the same checkpoint) share the reading even if the
	// first records were published before some of them subscribed.
	from  Position
	first *chunk
	done  bool // dissolved: members left or the reading ended
	// more is closed when records are published; room when a member
	// advances to a new chunk or leaves. Each is made by whoever waits.
	more, room chan struct{}
}

// member is one subscription in a convoy.
type member struct {
	seq     uint64    // chunk it reads
	moved   time.Time // when it last took records
	dropped bool
}

// Subscribe implements Store.
func (s *SharedLog) Subscribe(ctx context.Context, after Position) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		cursor := after
		for {
			if err := ctx.Err(); err != nil {
				yield(Record{}, err)
				return
			}
			s.mu.Lock()
			c := s.convoy
			if c == nil {
				c = s.start(cursor)
			}
			var att *attachment
			switch {
			case c.last == cursor:
				att = s.attach(c, c.head, c.head.n)
			case c.first != nil && c.from == cursor:
				att = s.attach(c, c.first, 0)
			}
			if att != nil {
				s.mu.Unlock()
				var ok bool
				if cursor, ok = s.follow(ctx, att, cursor, yield); ok {
					return
				}
				break // dropped: go on alone
			}
			ahead := c.last.Before(cursor)
			s.mu.Unlock()
			if ahead {
				break
			}
			// Behind the convoy: read alone until level with it, then join.
			// The join happens outside ReadAll's loop, whose iterator may hold
			// resources of the underlying store while it yields.
			for rec, err := range s.Store.ReadAll(ctx, cursor) {
				if err != nil {
					yield(Record{}, err)
					return
				}
				if !yield(rec, nil) {
					return
				}
				cursor = rec.Position
				s.mu.Lock()
				if c := s.convoy; c != nil && c.last == cursor {
					att = s.attach(c, c.head, c.head.n)
				}
				s.mu.Unlock()
				if att != nil {
					break
				}
			}
			if att != nil {
				var ok bool
				if cursor, ok = s.follow(ctx, att, cursor, yield); ok {
					return
				}
				break // dropped: go on alone
			}
			// Caught up with the head without meeting the convoy: look again.
		}
		for rec, err := range s.Store.Subscribe(ctx, cursor) {
			if !yield(rec, err) || err != nil {
				return
			}
		}
	}
}

// start makes a convoy reading the log after from. s.mu is held.
func (s *SharedLog) start(from Position) *convoy {
	ctx, cancel := context.WithCancel(context.Background())
	c := &convoy{cancel: cancel, head: &chunk{recs: make([]Record, s.chunk)}, last: from, members: map[*member]struct{}{}, from: from}
	c.first = c.head
	s.convoy = c
	go s.read(ctx, c, from)
	return c
}

// attachment is a member and where it reads next.
type attachment struct {
	c   *convoy
	m   *member
	ch  *chunk
	idx int
}

// attach adds a member to c reading ch from its record idx: the convoy's
// current end (c.head, c.head.n), or the start of a chunk the reader has not
// let go of. s.mu is held.
func (s *SharedLog) attach(c *convoy, ch *chunk, idx int) *attachment {
	m := &member{seq: ch.seq, moved: time.Now()}
	c.members[m] = struct{}{}
	return &attachment{c: c, m: m, ch: ch, idx: idx}
}

// leave removes m from c, whether it left (its subscription ended) or was
// dropped for stalling. A convoy without members has nobody to read for:
// whichever way its last member went, leave dissolves it, so that its reader
// and its subscription to the underlying store end. s.mu is held.
func (s *SharedLog) leave(c *convoy, m *member) {
	delete(c.members, m)
	wake(&c.room)
	if len(c.members) == 0 && !c.done {
		s.dissolve(c)
	}
}

// dissolve ends c: its reader stops and new subscriptions start another
// convoy. s.mu is held.
func (s *SharedLog) dissolve(c *convoy) {
	c.done = true
	c.cancel()
	if s.convoy == c {
		s.convoy = nil
	}
}

func wake(ch *chan struct{}) {
	if *ch != nil {
		close(*ch)
		*ch = nil
	}
}

func waitOn(ch *chan struct{}) <-chan struct{} {
	if *ch == nil {
		*ch = make(chan struct{})
	}
	return *ch
}

// read is a convoy's reader: it publishes the underlying subscription's
// records in chunks, waiting for room when the slowest member is a Window
// behind.
func (s *SharedLog) read(ctx context.Context, c *convoy, from Position) {
	var stall *time.Timer
	defer func() {
		if stall != nil {
			stall.Stop()
		}
	}()
	finish := func(err error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		c.head.final, c.head.err = true, err
		wake(&c.more)
		if !c.done {
			s.dissolve(c)
		}
	}
	for rec, err := range s.Store.Subscribe(ctx, from) {
		if err != nil {
			finish(err)
			return
		}
		s.mu.Lock()
		for c.head.n == len(c.head.recs) {
			if c.done {
				s.mu.Unlock()
				return
			}
			next := c.head.seq + 1
			slowest, stuck := next, time.Now().Add(-s.stall)
			for m := range c.members {
				slowest = min(slowest, m.seq)
			}
			if next-slowest < uint64(s.chunks) {
				ch := &chunk{seq: next, recs: make([]Record, s.chunk)}
				c.head.next, c.head = ch, ch
				if next >= uint64(s.chunks) {
					c.first = nil // bounded memory: a Window, not the log
				}
				break
			}
			// No room: drop the members that sit on the oldest chunk and
			// have taken nothing for StallTimeout, or wait for one to move.
			dropped := false
			for m := range c.members {
				if m.seq == slowest && m.moved.Before(stuck) {
					m.dropped = true
					s.leave(c, m)
					dropped = true
				}
			}
			if dropped {
				// The dropped wait on more; if they were the last members,
				// c is dissolved and the loop's first check ends the reader.
				wake(&c.more)
				continue
			}
			room := waitOn(&c.room)
			s.mu.Unlock()
			if stall == nil {
				stall = time.NewTimer(s.stall)
			} else {
				stall.Reset(s.stall)
			}
			select {
			case <-ctx.Done():
				return
			case <-room:
			case <-stall.C:
			}
			stall.Stop()
			s.mu.Lock()
		}
		c.head.recs[c.head.n] = rec
		c.head.n++
		c.last = rec.Position
		wake(&c.more)
		s.mu.Unlock()
	}
	finish(ctx.Err())
}

// follow yields the convoy's records to a member from where it is attached
// until the subscription ends (ok) or the member is dropped for stalling
// (!ok: the caller goes on alone from the returned position).
func (s *SharedLog) follow(ctx context.Context, a *attachment, cursor Position, yield func(Record, error) bool) (_ Position, ok bool) {
	c, m, ch, idx := a.c, a.m, a.ch, a.idx
	defer func() {
		if ok {
			s.mu.Lock()
			s.leave(c, m)
			s.mu.Unlock()
		}
	}()
	s.mu.Lock()
	for {
		// s.mu is held here.
		if m.dropped {
			s.mu.Unlock()
			return cursor, false
		}
		if err := ctx.Err(); err != nil {
			s.mu.Unlock()
			yield(Record{}, err)
			return cursor, true
		}
		m.moved = time.Now()
		switch {
		case idx < ch.n:
			recs := ch.recs[idx:ch.n]
			idx = ch.n
			s.mu.Unlock()
			for _, rec := range recs {
				if !yield(rec, nil) {
					return cursor, true
				}
				cursor = rec.Position
			}
		case ch.next != nil:
			ch, idx = ch.next, 0
			m.seq = ch.seq
			wake(&c.room)
			continue
		case ch.final:
			err := ch.err
			s.mu.Unlock()
			if err == nil {
				err = ErrClosed
			}
			yield(Record{}, err)
			return cursor, true
		default:
			if idx == len(ch.recs) {
				// Read to the end of a full chunk: what it waits for is the
				// next one, which the reader may make now.
				m.seq = ch.seq + 1
				wake(&c.room)
			}
			more := waitOn(&c.more)
			s.mu.Unlock()
			select {
			case <-ctx.Done():
				yield(Record{}, ctx.Err())
				return cursor, true
			case <-more:
			}
		}
		s.mu.Lock()
	}
}

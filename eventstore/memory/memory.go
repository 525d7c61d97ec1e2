package memory

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"sync"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/google/uuid"
)

// Store is an in-memory eventstore.Store. The zero value is not usable; call New.
type Store struct {
	mu      sync.RWMutex
	log     []eventstore.Record // log[i] is at position i+1
	streams map[string][]int    // stream id → indexes into log, in version order
	ids     map[uuid.UUID]int   // event id → index into log
	// notify is closed and replaced on every append and on Close, waking
	// subscribers without polling.
	notify chan struct{}
	closed bool
	// maxEventSize bounds an event's data plus metadata, in bytes.
	maxEventSize int
}

// DefaultMaxEventSize is the default bound on one event's data and metadata.
const DefaultMaxEventSize = 16 << 20

// New returns an empty Store.
func New() *Store {
	return &Store{
		streams:      map[string][]int{},
		ids:          map[uuid.UUID]int{},
		notify:       make(chan struct{}),
		maxEventSize: DefaultMaxEventSize,
	}
}

var _ eventstore.Store = (*Store)(nil)

// Append implements eventstore.Store.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, err
	}
	events = slices.Clone(events)
	if err := eventstore.PrepareAppend(stream, expected, events, s.maxEventSize); err != nil {
		return eventstore.AppendResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return eventstore.AppendResult{}, eventstore.ErrClosed
	}
	idx := s.streams[stream]
	version := uint64(len(idx))
	if res, done, err := s.repeatedAppend(stream, expected, events); done {
		return res, err
	}
	if err := expected.Check(stream, version); err != nil {
		return eventstore.AppendResult{}, err
	}
	res := eventstore.AppendResult{StreamID: stream, FirstVersion: version, LastVersion: version}
	if len(idx) > 0 {
		res.Position = s.log[idx[len(idx)-1]].Position
	}
	if len(events) == 0 {
		return res, nil
	}
	now := time.Now().UTC()
	res.FirstVersion = version + 1
	for _, e := range events {
		version++
		e.Data = slices.Clone(e.Data)
		e.Metadata.Headers = cloneMap(e.Metadata.Headers)
		i := len(s.log)
		s.log = append(s.log, eventstore.Record{
			Event:      e,
			StreamID:   stream,
			Version:    version,
			Position:   eventstore.SeqPosition(uint64(i + 1)),
			RecordedAt: now,
		})
		s.ids[e.ID] = i
		idx = append(idx, i)
	}
	s.streams[stream] = idx
	res.LastVersion = version
	res.Position = s.log[len(s.log)-1].Position
	close(s.notify)
	s.notify = make(chan struct{})
	return res, nil
}

// repeatedAppend reports done when some of the events' ids are already in the
// log: either the append is an exact repeat (same ids, in order, at a place the
// expectation allows) and the original result is returned with Repeated set,
// or it is an error.
func (s *Store) repeatedAppend(stream string, expected eventstore.ExpectedVersion, events []eventstore.Event) (eventstore.AppendResult, bool, error) {
	seen := 0
	for _, e := range events {
		if _, ok := s.ids[e.ID]; ok {
			seen++
		}
	}
	if seen == 0 {
		return eventstore.AppendResult{}, false, nil
	}
	if seen == len(events) {
		first := s.log[s.ids[events[0].ID]]
		idx := s.streams[stream]
		match := first.StreamID == stream && expected.Allows(first.Version-1) &&
			int(first.Version-1)+len(events) <= len(idx)
		for k := 0; match && k < len(events); k++ {
			match = s.log[idx[int(first.Version)-1+k]].ID == events[k].ID
		}
		if match {
			last := s.log[idx[int(first.Version)-2+len(events)]]
			return eventstore.AppendResult{
				StreamID: stream, FirstVersion: first.Version, LastVersion: last.Version, Position: last.Position,
				Repeated: true,
			}, true, nil
		}
	}
	for _, e := range events {
		if i, ok := s.ids[e.ID]; ok {
			rec := s.log[i]
			return eventstore.AppendResult{}, true, fmt.Errorf("%w: %s is already stream %q version %d",
				eventstore.ErrDuplicateEvent, e.ID, rec.StreamID, rec.Version)
		}
	}
	return eventstore.AppendResult{}, false, nil
}

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		s.mu.RLock()
		closed, idx := s.closed, s.streams[stream]
		s.mu.RUnlock()
		switch {
		case closed:
			yield(eventstore.Record{}, eventstore.ErrClosed)
			return
		case len(idx) == 0:
			yield(eventstore.Record{}, fmt.Errorf("%w: %q", eventstore.ErrStreamNotFound, stream))
			return
		}
		if from == 0 {
			from = 1
		}
		for v := from; v <= uint64(len(idx)); v++ {
			if err := ctx.Err(); err != nil {
				yield(eventstore.Record{}, err)
				return
			}
			s.mu.RLock()
			rec := s.log[idx[v-1]]
			s.mu.RUnlock()
			if !yield(cloneRecord(rec), nil) {
				return
			}
		}
	}
}

// ReadAll implements eventstore.Store.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		s.mu.RLock()
		closed, log := s.closed, s.log
		s.mu.RUnlock()
		if closed {
			yield(eventstore.Record{}, eventstore.ErrClosed)
			return
		}
		for i := after.Commit; i < uint64(len(log)); i++ {
			if err := ctx.Err(); err != nil {
				yield(eventstore.Record{}, err)
				return
			}
			if !yield(cloneRecord(log[i]), nil) {
				return
			}
		}
	}
}

// Subscribe implements eventstore.Store. It wakes on append; it never polls.
func (s *Store) Subscribe(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		next := after.Commit
		for {
			s.mu.RLock()
			closed, log, notify := s.closed, s.log, s.notify
			s.mu.RUnlock()
			if closed {
				yield(eventstore.Record{}, eventstore.ErrClosed)
				return
			}
			if err := ctx.Err(); err != nil {
				yield(eventstore.Record{}, err)
				return
			}
			if next < uint64(len(log)) {
				for ; next < uint64(len(log)); next++ {
					// A long catch-up must still end promptly on cancellation.
					if err := ctx.Err(); err != nil {
						yield(eventstore.Record{}, err)
						return
					}
					if !yield(cloneRecord(log[next]), nil) {
						return
					}
				}
				continue
			}
			select {
			case <-ctx.Done():
			case <-notify:
			}
		}
	}
}

// Head implements eventstore.Store.
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return eventstore.Position{}, eventstore.ErrClosed
	}
	return eventstore.SeqPosition(uint64(len(s.log))), nil
}

// Close implements eventstore.Store. It wakes every subscriber, which then ends
// with eventstore.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.notify)
	}
	return nil
}

// cloneRecord gives a reader its own copy of the parts of a record it could
// change, so that no reader can alter the log.
func cloneRecord(rec eventstore.Record) eventstore.Record {
	rec.Data = slices.Clone(rec.Data)
	rec.Metadata.Headers = cloneMap(rec.Metadata.Headers)
	return rec
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

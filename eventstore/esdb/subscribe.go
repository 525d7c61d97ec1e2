package esdb

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/retry"
)

// Subscribe implements eventstore.Store with a catch-up subscription to $all.
//
// System events are filtered out on the server, with the client's
// ExcludeSystemEventsFilter. When the subscription drops (the server restarts,
// the leader changes, the network fails) it is opened again with jittered
// exponential back-off between Config.MinBackoff and Config.MaxBackoff, from
// the position of the last record handed to the caller; records at or before
// that position are skipped, so the caller sees no record twice and none
// missing. It ends with ctx's error, with eventstore.ErrClosed after Close, or
// with an error retrying cannot fix (credentials, ACLs).
func (s *Store) Subscribe(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		r := &resumer{last: after}
		b := retry.New(s.cfg.MinBackoff, s.cfg.MaxBackoff, retry.EqualJitter)
		attempt := 0
		for {
			delivered, err := s.subscribeOnce(ctx, r, yield)
			if errors.Is(err, errStopped) {
				return
			}
			switch {
			case ctx.Err() != nil:
				yield(eventstore.Record{}, ctx.Err())
				return
			case s.isClosed():
				yield(eventstore.Record{}, eventstore.ErrClosed)
				return
			case classify(err) == kindDenied:
				yield(eventstore.Record{}, s.mapError(ctx, err, fmt.Sprintf("subscribe to $all after %s", r.last)))
				return
			}
			if delivered {
				b.Reset()
				attempt = 0
			}
			attempt++
			wait := b.Next()
			s.log.Warn("subscription to $all dropped; resubscribing",
				"after", r.last.String(), "attempt", attempt, "backoff", wait, "error", err)
			if !s.sleep(ctx, wait) {
				continue // the checks above end the loop
			}
		}
	}
}

// errStopped means the caller stopped the loop over the subscription.
var errStopped = errors.New("esdb: subscription stopped by its caller")

// subscribeOnce runs one subscription until it drops or the caller stops,
// reporting whether any record was handed over.
func (s *Store) subscribeOnce(ctx context.Context, r *resumer, yield func(eventstore.Record, error) bool) (bool, error) {
	c, release, err := s.acquire(ctx)
	if err != nil {
		return false, err
	}
	octx, cancel := s.opContext(ctx)
	defer cancel()
	sub, err := c.client.SubscribeToAll(octx, esdb.SubscribeToAllOptions{
		From:   r.from(),
		Filter: s.filter(),
	})
	// Receiving from a subscription never calls into the client's connection
	// loop, so the subscription leaves the client as soon as it is open: a
	// live subscription must not hold up a reconnection probe.
	release()
	if err != nil {
		s.reconnectIfLost(c, err)
		return false, err
	}
	defer sub.Close()
	delivered := false
	for {
		ev := sub.Recv()
		switch {
		case ev.SubscriptionDropped != nil:
			err := ev.SubscriptionDropped.Error
			if err == nil {
				err = errors.New("subscription dropped")
			}
			s.reconnectIfLost(c, err)
			return delivered, err
		case ev.EventAppeared != nil:
			rec := ev.EventAppeared.OriginalEvent()
			if rec == nil || !s.visible(rec) || !r.admit(toPosition(rec.Position)) {
				continue
			}
			delivered = true
			if !yield(s.record(rec), nil) {
				return delivered, errStopped
			}
		}
		// Checkpoints, caught-up and fell-behind notices carry no record.
	}
}

// filter is the server-side filter of the store's subscriptions: the client's
// ExcludeSystemEventsFilter, or with a StreamPrefix the streams that carry it
// (which leaves out system streams too; '$' events written to the store's own
// streams, such as tombstones, are then dropped in Go).
func (s *Store) filter() *esdb.SubscriptionFilter {
	if s.prefix == "" {
		return esdb.ExcludeSystemEventsFilter()
	}
	return &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{s.prefix}}
}

// sleep waits d, or less if ctx ends or the store closes; it reports whether
// the whole wait elapsed.
func (s *Store) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.ctx.Done():
		return false
	}
}

// resumer keeps a subscription's place across reconnections: the position of
// the last record handed to the caller.
//
// A catch-up subscription from a position starts after it (the client's own
// resubscribe sample passes the last event's position back as From), but the
// store does not rely on that: admit refuses every record at or before the
// last one handed over, so a server that replays the boundary record, or
// replays more after a leader change, causes no duplicate. Positions of $all
// strictly increase, so admitting only larger positions also leaves no gap.
type resumer struct {
	last eventstore.Position
}

// from is where the next subscription starts.
func (r *resumer) from() esdb.AllPosition { return fromPosition(r.last) }

// admit reports whether a record at p is new, and if so records it as the
// last one handed over.
func (r *resumer) admit(p eventstore.Position) bool {
	if !r.last.Before(p) {
		return false
	}
	r.last = p
	return true
}

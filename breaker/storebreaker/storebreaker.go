// Package storebreaker puts a breaker.Breaker and a time limit around the
// calls of an eventstore.Store, so that while the store is down a command
// fails at once instead of waiting out its connection's timeouts.
//
// Append, ReadStream and Head go through the breaker, each within
// Config.Timeout. ReadAll and Subscribe, which may rightly run for a long
// time, are refused while the breaker is open but neither count nor are
// timed.
package storebreaker

import (
	"context"
	"errors"
	"iter"
	"time"

	"github.com/eventline/eventline/breaker"
	"github.com/eventline/eventline/eventstore"
)

// DefaultTimeout bounds one Append, Head or whole ReadStream when
// Config.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Config configures Wrap.
type Config struct {
	// Breaker guards the store. Required.
	Breaker *breaker.Breaker
	// Timeout bounds each Append, Head and ReadStream (the whole reading).
	// 0 means DefaultTimeout; negative means no bound beyond the caller's.
	Timeout time.Duration
}

// Store is an eventstore.Store whose calls go through a breaker.
type Store struct {
	store   eventstore.Store
	b       *breaker.Breaker
	timeout time.Duration
}

var _ eventstore.Store = (*Store)(nil)

// Wrap returns store behind cfg.Breaker. Closing the returned Store closes
// store.
func Wrap(store eventstore.Store, cfg Config) (*Store, error) {
	switch {
	case store == nil:
		return nil, errors.New("storebreaker: nil store")
	case cfg.Breaker == nil:
		return nil, errors.New("storebreaker: Config.Breaker is required")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	return &Store{store: store, b: cfg.Breaker, timeout: cfg.Timeout}, nil
}

// Unwrap returns the store behind the breaker.
func (s *Store) Unwrap() eventstore.Store { return s.store }

func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.timeout < 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.timeout)
}

// Append appends through the breaker.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	done, err := s.b.Allow()
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	res, err := s.store.Append(ctx, stream, expected, events...)
	done(health(err))
	return res, err
}

// ReadStream reads through the breaker; the whole reading is one call.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		done, err := s.b.Allow()
		if err != nil {
			yield(eventstore.Record{}, err)
			return
		}
		ctx, cancel := s.bound(ctx)
		defer cancel()
		var failed error
		defer func() { done(health(failed)) }()
		for rec, err := range s.store.ReadStream(ctx, stream, from) {
			if err != nil {
				failed = err
			}
			if !yield(rec, err) {
				return
			}
		}
	}
}

// ReadAll is refused while the breaker is open, else passed through.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return s.checked(s.store.ReadAll(ctx, after))
}

// Subscribe is refused while the breaker is open, else passed through.
func (s *Store) Subscribe(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return s.checked(s.store.Subscribe(ctx, after))
}

func (s *Store) checked(seq iter.Seq2[eventstore.Record, error]) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		if err := s.b.Check(); err != nil {
			yield(eventstore.Record{}, err)
			return
		}
		seq(yield)
	}
}

// Head asks through the breaker.
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	done, err := s.b.Allow()
	if err != nil {
		return eventstore.Position{}, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	p, err := s.store.Head(ctx)
	done(health(err))
	return p, err
}

// Close closes the store behind the breaker.
func (s *Store) Close() error { return s.store.Close() }

func health(err error) error {
	if IsAnswer(err) {
		return nil
	}
	return err
}

// answers are the store's errors that show it working: it refused or could
// not find something, which says nothing about its health.
var answers = []error{
	eventstore.ErrWrongVersion, eventstore.ErrStreamNotFound, eventstore.ErrStreamDeleted,
	eventstore.ErrDuplicateEvent, eventstore.ErrInvalidStreamID, eventstore.ErrInvalidEvent,
	eventstore.ErrTooLarge, eventstore.ErrInvalidPosition, eventstore.ErrUnknownEventType,
	eventstore.ErrDecode, eventstore.ErrClosed,
}

// IsAnswer reports whether err shows a working store: nil, or one of
// eventstore's refusals (wrong version, not found, invalid input, …).
// Anything else — ErrUnavailable, a network error, a timeout — is a failure.
func IsAnswer(err error) bool {
	if err == nil {
		return true
	}
	for _, a := range answers {
		if errors.Is(err, a) {
			return true
		}
	}
	return false
}

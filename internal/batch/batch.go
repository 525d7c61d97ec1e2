// Package batch is the one subscription batcher of eventline: it reads a
// subscription (an iter.Seq2 of items and errors) ahead into a bounded
// buffer, and hands the caller batches of up to Size items.
//
// A batch starts with the first item available and closes when it holds Size
// items, when MaxWait has passed since its first item, or, with MaxWait 0, as
// soon as no further item is ready (flush on idle): a quiet subscription
// delivers each item at once, a busy one fills batches. The buffer is the
// back-pressure: when the caller is slow, it fills, and the reader stops
// pulling from the subscription.
package batch

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"
)

// ErrEnded means the subscription ended without an error, which a
// subscription that should run until its context ends must not do.
var ErrEnded = errors.New("batch: subscription ended")

// ErrInvalidConfig means a Config failed Validate.
var ErrInvalidConfig = errors.New("batch: invalid config")

// Config shapes the batches.
type Config struct {
	// Size is the most items a batch holds; at least 1.
	Size int
	// MaxWait bounds how long a batch's first item waits for more; 0 closes
	// a batch as soon as no further item is ready.
	MaxWait time.Duration
	// Buffer is how many items are read ahead; default Size.
	Buffer int
}

// Validate reports a Config that Start would refuse.
func (c Config) Validate() error {
	if c.Size < 1 || c.MaxWait < 0 || c.Buffer < 0 {
		return fmt.Errorf("%w: Size %d (want >= 1), MaxWait %v and Buffer %d (want >= 0)", ErrInvalidConfig, c.Size, c.MaxWait, c.Buffer)
	}
	return nil
}

type item[T any] struct {
	v   T
	err error
}

// Batcher reads one subscription. Next and Stop are called by one goroutine.
type Batcher[T any] struct {
	cfg    Config
	ch     chan item[T]
	cancel context.CancelFunc
	wg     sync.WaitGroup
	buf    []T
	err    error // the subscription's end, once Next has seen it
	timer  *time.Timer
}

// Start starts reading the subscription that subscribe opens; subscribe gets
// a context that ends when ctx ends or the Batcher is stopped, and its
// subscription must end then. Stop the Batcher to release it.
func Start[T any](ctx context.Context, subscribe func(context.Context) iter.Seq2[T, error], cfg Config) (*Batcher[T], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Buffer == 0 {
		cfg.Buffer = cfg.Size
	}
	ctx, cancel := context.WithCancel(ctx)
	b := &Batcher[T]{cfg: cfg, ch: make(chan item[T], cfg.Buffer), cancel: cancel, buf: make([]T, 0, cfg.Size)}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer close(b.ch)
		for v, err := range subscribe(ctx) {
			select {
			case b.ch <- item[T]{v, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
		if ctx.Err() == nil {
			select {
			case b.ch <- item[T]{err: ErrEnded}:
			case <-ctx.Done():
			}
		}
	}()
	return b, nil
}

// Next returns the next batch. It waits for a first item until ctx ends
// (returning ctx's error) or wake fires (returning an empty batch and no
// error, so that the caller can do periodic work; wake may be nil).
//
// When the subscription fails or ends, Next returns the items before the
// failure with its error (ErrEnded for an end without error), and that
// error, alone, on every later call. The batch is valid until the next call.
func (b *Batcher[T]) Next(ctx context.Context, wake <-chan time.Time) ([]T, error) {
	if b.err != nil {
		return nil, b.err
	}
	b.buf = b.buf[:0]
	var it item[T]
	var ok bool
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-wake:
		return nil, nil
	case it, ok = <-b.ch:
	}
	if !b.add(it, ok) {
		return b.buf, b.err
	}
	if b.cfg.MaxWait == 0 {
		for len(b.buf) < b.cfg.Size {
			select {
			case it, ok := <-b.ch:
				if !b.add(it, ok) {
					return b.buf, b.err
				}
			default:
				return b.buf, nil
			}
		}
		return b.buf, nil
	}
	if b.timer == nil {
		b.timer = time.NewTimer(b.cfg.MaxWait)
	} else {
		b.timer.Reset(b.cfg.MaxWait)
	}
	defer b.timer.Stop()
	for len(b.buf) < b.cfg.Size {
		select {
		case it, ok := <-b.ch:
			if !b.add(it, ok) {
				return b.buf, b.err
			}
		case <-b.timer.C:
			return b.buf, nil
		case <-ctx.Done():
			// The items gathered were taken from the subscription: hand
			// them over; the next call reports ctx's end.
			return b.buf, nil
		}
	}
	return b.buf, nil
}

// add appends an item received from the channel, or records the
// subscription's end; it reports whether the subscription goes on.
func (b *Batcher[T]) add(it item[T], ok bool) bool {
	switch {
	case !ok:
		// The reader stopped without a word: Stop was called, or the
		// Start context ended.
		b.err = context.Canceled
		return false
	case it.err != nil:
		b.err = it.err
		return false
	}
	b.buf = append(b.buf, it.v)
	return true
}

// Stop stops reading the subscription and waits for the reader to end.
func (b *Batcher[T]) Stop() {
	b.cancel()
	b.wg.Wait()
}

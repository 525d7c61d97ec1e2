// Package retry is the one back-off policy of eventline's retry loops, built
// on github.com/cenkalti/backoff/v5: exponential growth from a minimum pause,
// doubling, randomized around each step so that processes failing together
// do not retry in lockstep, and capped so that no pause exceeds a maximum.
package retry

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Jitter factors for Backoff.
const (
	// EqualJitter draws each pause from [d/2, 3d/2] around the step d: for
	// loops that wait out an outage.
	EqualJitter = 0.5
	// FullJitter draws each pause from [0, 2d]: for loops that retry a
	// contended operation (optimistic concurrency), where spreading the
	// callers matters more than the pause's floor.
	FullJitter = 1.0
)

// Backoff is an exponential back-off from Min to Max. It is not safe for
// concurrent use: each retry loop has its own.
type Backoff struct {
	b   backoff.ExponentialBackOff
	max time.Duration
}

// New returns a back-off whose n-th pause (from 0) is drawn from
// [(1-jitter)·d, (1+jitter)·d] with d = min·2ⁿ, and never exceeds max.
// min and max must be positive with min <= max; jitter is in [0, 1].
func New(min, max time.Duration, jitter float64) *Backoff {
	b := &Backoff{max: max}
	b.b = backoff.ExponentialBackOff{
		InitialInterval:     min,
		RandomizationFactor: jitter,
		Multiplier:          2,
		MaxInterval:         max,
	}
	b.b.Reset()
	return b
}

// Next returns the next pause.
func (b *Backoff) Next() time.Duration { return min(b.b.NextBackOff(), b.max) }

// Reset starts the growth over from the minimum, after a success.
func (b *Backoff) Reset() { b.b.Reset() }

// Sleep waits d, or until ctx ends; it then returns ctx's error.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

package retry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/eventline/eventline/internal/retry"
)

func TestBackoffBounds(t *testing.T) {
	for _, tc := range []struct {
		min, max time.Duration
		jitter   float64
	}{
		{10 * time.Millisecond, 80 * time.Millisecond, retry.EqualJitter},
		{time.Millisecond, 100 * time.Millisecond, retry.FullJitter},
		{50 * time.Millisecond, 50 * time.Millisecond, retry.EqualJitter},
		{time.Second, 4 * time.Second, 0},
	} {
		for range 50 {
			b := retry.New(tc.min, tc.max, tc.jitter)
			step := tc.min
			for n := range 12 {
				d := b.Next()
				lo := time.Duration((1 - tc.jitter) * float64(min(step, tc.max)))
				hi := min(time.Duration((1+tc.jitter)*float64(step)), tc.max)
				if d < lo || d > hi {
					t.Fatalf("%+v: pause %d = %v, want in [%v, %v]", tc, n, d, lo, hi)
				}
				step = min(2*step, tc.max)
			}
			b.Reset()
			if d := b.Next(); d > time.Duration((1+tc.jitter)*float64(tc.min)) {
				t.Fatalf("%+v: first pause after Reset = %v, want around %v", tc, d, tc.min)
			}
		}
	}
}

func TestBackoffNoJitterDoubles(t *testing.T) {
	b := retry.New(time.Millisecond, 10*time.Millisecond, 0)
	want := []time.Duration{1, 2, 4, 8, 10, 10}
	for i, w := range want {
		if d := b.Next(); d != w*time.Millisecond {
			t.Fatalf("pause %d = %v, want %v", i, d, w*time.Millisecond)
		}
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := retry.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on an ended context = %v, want context.Canceled", err)
	}
	if err := retry.Sleep(context.Background(), time.Microsecond); err != nil {
		t.Fatalf("Sleep = %v", err)
	}
}

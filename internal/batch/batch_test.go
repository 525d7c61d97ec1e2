package batch_test

import (
	"context"
	"errors"
	"iter"
	"slices"
	"testing"
	"time"

	"github.com/eventline/eventline/internal/batch"
)

// source yields first, closes sent, waits for gate (if any) and yields more,
// then blocks until its context ends.
type source struct {
	first, more []int
	gate        chan struct{}
	sent        chan struct{}
}

func (s *source) subscribe(ctx context.Context) iter.Seq2[int, error] {
	return func(yield func(int, error) bool) {
		for _, v := range s.first {
			if !yield(v, nil) {
				return
			}
		}
		if s.sent != nil {
			close(s.sent)
		}
		if s.gate != nil {
			select {
			case <-s.gate:
			case <-ctx.Done():
				return
			}
			for _, v := range s.more {
				if !yield(v, nil) {
					return
				}
			}
		}
		<-ctx.Done()
	}
}

func start(t *testing.T, s *source, cfg batch.Config) *batch.Batcher[int] {
	t.Helper()
	b, err := batch.Start(context.Background(), s.subscribe, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	return b
}

func next(t *testing.T, b *batch.Batcher[int]) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := b.Next(ctx, nil)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return slices.Clone(got)
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []batch.Config{{}, {Size: 1, MaxWait: -1}, {Size: 1, Buffer: -1}} {
		if _, err := batch.Start(context.Background(), (&source{}).subscribe, c); !errors.Is(err, batch.ErrInvalidConfig) {
			t.Errorf("Start(%+v) = %v, want ErrInvalidConfig", c, err)
		}
	}
}

func TestSizeBoundsBatches(t *testing.T) {
	s := &source{first: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, sent: make(chan struct{})}
	b := start(t, s, batch.Config{Size: 4, Buffer: 10})
	<-s.sent // all ten are in the buffer
	for _, want := range [][]int{{1, 2, 3, 4}, {5, 6, 7, 8}, {9, 10}} {
		if got := next(t, b); !slices.Equal(got, want) {
			t.Fatalf("batch = %v, want %v", got, want)
		}
	}
}

func TestFlushOnIdle(t *testing.T) {
	// MaxWait 0: the batch closes as soon as nothing more is ready, though
	// it has room and the subscription goes on.
	s := &source{first: []int{1}, sent: make(chan struct{})}
	b := start(t, s, batch.Config{Size: 100})
	<-s.sent
	if got := next(t, b); !slices.Equal(got, []int{1}) {
		t.Fatalf("batch = %v, want [1]", got)
	}
}

func TestMaxWaitGathersLateItems(t *testing.T) {
	// With a long MaxWait, items that arrive after the first join its batch
	// until the batch is full.
	s := &source{first: []int{1}, more: []int{2, 3}, gate: make(chan struct{}), sent: make(chan struct{})}
	b := start(t, s, batch.Config{Size: 3, MaxWait: time.Hour})
	go func() { <-s.sent; close(s.gate) }()
	if got := next(t, b); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("batch = %v, want [1 2 3]", got)
	}
}

func TestMaxWaitFlushes(t *testing.T) {
	s := &source{first: []int{1}}
	b := start(t, s, batch.Config{Size: 100, MaxWait: 20 * time.Millisecond})
	if got := next(t, b); !slices.Equal(got, []int{1}) {
		t.Fatalf("batch = %v, want [1]", got)
	}
}

func TestErrorEndsBatch(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		end  error // nil: the subscription ends without an error
		want error
	}{{"error", boom, boom}, {"end", nil, batch.ErrEnded}} {
		t.Run(tc.name, func(t *testing.T) {
			sub := func(ctx context.Context) iter.Seq2[int, error] {
				return func(yield func(int, error) bool) {
					if yield(1, nil) && yield(2, nil) && tc.end != nil {
						yield(0, tc.end)
					}
				}
			}
			b, err := batch.Start(context.Background(), sub, batch.Config{Size: 10, MaxWait: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(b.Stop)
			got, err := b.Next(context.Background(), nil)
			if !slices.Equal(got, []int{1, 2}) || !errors.Is(err, tc.want) {
				t.Fatalf("Next = %v, %v; want [1 2], %v", got, err, tc.want)
			}
			if got, err := b.Next(context.Background(), nil); len(got) != 0 || !errors.Is(err, tc.want) {
				t.Fatalf("Next after the end = %v, %v; want nothing, %v", got, err, tc.want)
			}
		})
	}
}

func TestWakeAndContext(t *testing.T) {
	b := start(t, &source{}, batch.Config{Size: 10})
	wake := make(chan time.Time, 1)
	wake <- time.Now()
	if got, err := b.Next(context.Background(), wake); len(got) != 0 || err != nil {
		t.Fatalf("Next on wake = %v, %v; want nothing, nil", got, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Next(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next on an ended context = %v, want context.Canceled", err)
	}
}

func TestStopEndsSubscription(t *testing.T) {
	stopped := make(chan struct{})
	sub := func(ctx context.Context) iter.Seq2[int, error] {
		return func(yield func(int, error) bool) {
			defer close(stopped)
			for i := 0; ; i++ {
				if !yield(i, nil) {
					return
				}
			}
		}
	}
	b, err := batch.Start(context.Background(), sub, batch.Config{Size: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := next(t, b); len(got) == 0 {
		t.Fatal("empty batch from a busy subscription")
	}
	b.Stop()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("subscription still running after Stop")
	}
}

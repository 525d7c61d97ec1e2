package command

import (
	"context"
	"sync"
	"testing"
)

func TestStreamLocksExcludeAndForget(t *testing.T) {
	var l streamLocks
	var wg sync.WaitGroup
	inside, most := 0, 0
	var mu sync.Mutex
	for range 32 {
		wg.Go(func() {
			if err := l.lock(context.Background(), "s"); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			inside++
			most = max(most, inside)
			mu.Unlock()
			mu.Lock()
			inside--
			mu.Unlock()
			l.unlock("s")
		})
	}
	wg.Wait()
	if most != 1 {
		t.Fatalf("%d callers held one stream's lock at once", most)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := l.lock(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := l.lock(ctx, "s"); err == nil {
		t.Fatal("lock of a held stream with an ended context succeeded")
	}
	if err := l.lock(context.Background(), "other"); err != nil {
		t.Fatal("streams share a lock")
	}
	l.unlock("other")
	l.unlock("s")
	if n := len(l.locks); n != 0 {
		t.Fatalf("%d lock entries left after every holder left", n)
	}
}

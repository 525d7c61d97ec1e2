package projection

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/prometheus/client_golang/prometheus"
)

// TestFullRedisIsWaitedOut: with maxmemory-policy noeviction, a full Redis
// refuses a batch as a whole (EXECABORT: nothing of it lands). The runner
// retries it instead of stopping as for a command Redis refused in a
// committed batch, and once memory is freed it goes on, exactly once.
func TestFullRedisIsWaitedOut(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	store := memory.New()
	r := newRunner(t, Config{Store: store, Redis: rdb, Projection: counts("c"), Logger: quietLogger(),
		Registerer: prometheus.NewRegistry(), MaxBackoff: 20 * time.Millisecond})
	startRunner(t, r)
	last := appendEvents(t, store, 0, 100)
	waitFor(t, rdb, "c", last)

	// Fill Redis up to a limit just above what it holds.
	info := rdb.Info(ctx, "memory").Val()
	var mem int64
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, "used_memory:"); ok {
			fmt.Sscan(v, &mem)
		}
	}
	if err := rdb.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ConfigSet(ctx, "maxmemory", fmt.Sprint(mem+512<<10)).Err(); err != nil {
		t.Fatal(err)
	}
	filler := strings.Repeat("x", 16<<10)
	for i := 0; ; i++ {
		if err := rdb.Set(ctx, fmt.Sprintf("filler:%d", i), filler, 0).Err(); err != nil {
			if !strings.HasPrefix(err.Error(), "OOM") {
				t.Fatalf("filling Redis: %v", err)
			}
			break
		}
		if i > 10_000 {
			t.Fatal("Redis never refused a write")
		}
	}
	last = appendEvents(t, store, 100, 200)
	waitUntil(t, 10*time.Second, "the runner to retry the refused batch", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.st.State == StateStopped {
			t.Fatalf("the runner stopped: %s", r.st.Error)
		}
		return r.st.State == StateRetrying
	})
	if err := rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, rdb, "c", last)
	if d := diffModels(expected("c", 200), dumpModel(t, rdb, "c")); d != "" {
		t.Fatalf("model after Redis had room again:\n%s", d)
	}
}

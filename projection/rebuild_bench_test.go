package projection

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

// BenchmarkRebuild rebuilds a projection of N records (EVENTLINE_BENCH_EVENTS)
// at v2 beside a live v1 of 1,000 keys with Rebuild, and reports the events/s
// up to the switch, the ratio to the one-connection pipelined HSET ceiling
// measured in the same run, the time to remove v1, and peak heap and RSS.
func BenchmarkRebuild(b *testing.B) {
	srv := redistest.Start(b)
	n := benchEvents()
	ceiling := ceilingHSET(b, srv.Addr, n)
	ctx := context.Background()
	var rate, removal, peakHeap, peakRSS float64
	for iter := range b.N {
		store := newGenStore(n)
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
		name := "rebuild" + strconv.Itoa(iter)
		// A live v1 at the head: its model and checkpoint, as a runner left them.
		pipe := rdb.Pipeline()
		for i := range 1000 {
			pipe.HSet(ctx, query.Key(name, query.Version(1), "s", "s-"+strconv.Itoa(i)), "n", i)
		}
		head := eventstore.SeqPosition(uint64(n))
		pipe.HSet(ctx, query.CheckpointKey(name, query.Version(1)), query.FieldPosition, head.String(),
			query.FieldCommit, head.Commit, query.FieldPrepare, head.Prepare)
		pipe.Set(ctx, query.ActiveKey(name), 1, 0)
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}

		stopSampling := make(chan struct{})
		var sampled sync.WaitGroup
		sampled.Add(1)
		go func() {
			defer sampled.Done()
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				peakHeap = max(peakHeap, float64(ms.HeapInuse))
				peakRSS = max(peakRSS, rss())
				select {
				case <-stopSampling:
					return
				case <-t.C:
				}
			}
		}()
		start := time.Now()
		var switched time.Time
		res, err := Rebuild(ctx, Config{Store: store, Redis: rdb, Projection: Define(name, 2, hsetApply),
			Logger: quietLogger(), RetireDelay: time.Millisecond},
			RebuildOptions{ProgressEvery: 5 * time.Millisecond, Progress: func(p Progress) {
				if switched.IsZero() && (p.Phase == PhaseRemovingOld || p.Phase == PhaseDone) {
					switched = time.Now()
				}
			}})
		end := time.Now()
		close(stopSampling)
		sampled.Wait()
		if err != nil || res.Previous != 1 || res.Checkpoint != head {
			b.Fatalf("rebuild: %+v, %v", res, err)
		}
		rate = float64(n) / switched.Sub(start).Seconds()
		removal = end.Sub(switched).Seconds()
		_ = rdb.Close()
	}
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(ceiling, "ceiling-ops/s")
	b.ReportMetric(rate/ceiling, "ratio")
	b.ReportMetric(removal*1000, "switch-to-removed-ms")
	b.ReportMetric(peakHeap/(1<<20), "peak-heap-MiB")
	b.ReportMetric(peakRSS/(1<<20), "peak-RSS-MiB")
}

func hsetApply(ctx context.Context, tx *Tx, rec eventstore.Record) error {
	tx.Pipe().HSet(ctx, tx.Key("s", rec.StreamID), "n", rec.Version)
	return nil
}

package projection

import (
	"context"
	"fmt"
	"iter"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/query"
	"github.com/eventline/eventline/redisurl"
	"github.com/redis/go-redis/v9"
)

// benchEvents is the size of the catch-up benchmarks: EVENTLINE_BENCH_EVENTS,
// default 100,000 (the reported figures use 1,000,000).
func benchEvents() int {
	if n, err := strconv.Atoi(os.Getenv("EVENTLINE_BENCH_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

// ceilingHSET measures go-redis pipelined HSET, pipelines of 500, on one
// connection: the raw ceiling the runner is compared with.
func ceilingHSET(b *testing.B, addr string, n int) float64 {
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1})
	defer rdb.Close()
	return ceilingPipelinedHSET(b, rdb, n)
}

func BenchmarkCeilingPipelinedHSET(b *testing.B) {
	srv := redistest.Start(b)
	n := benchEvents()
	var ops float64
	for range b.N {
		ops = ceilingHSET(b, srv.Addr, n)
	}
	b.ReportMetric(ops, "ops/s")
}

// genStore is a log of n synthetic records made on the fly, so that the
// catch-up benchmark measures the runner (and its memory), not a store.
type genStore struct {
	n       uint64
	streams []string
	t0      time.Time
	// open, when set, holds every read back until it is closed: the log
	// looks empty (Head Start) until then.
	open chan struct{}
}

// closed reports whether the log is readable now.
func (s *genStore) closed() bool {
	if s.open == nil {
		return true
	}
	select {
	case <-s.open:
		return true
	default:
		return false
	}
}

func newGenStore(n int) *genStore {
	s := &genStore{n: uint64(n), t0: time.Now()}
	for i := range 1000 {
		s.streams = append(s.streams, "s-"+strconv.Itoa(i))
	}
	return s
}

func (s *genStore) rec(i uint64) eventstore.Record {
	return eventstore.Record{Event: eventstore.Event{Type: "inc"}, StreamID: s.streams[i%1000],
		Version: i/1000 + 1, Position: eventstore.SeqPosition(i), RecordedAt: s.t0}
}
func (s *genStore) Append(context.Context, string, eventstore.ExpectedVersion, ...eventstore.Event) (eventstore.AppendResult, error) {
	return eventstore.AppendResult{}, eventstore.ErrClosed
}
func (s *genStore) ReadStream(context.Context, string, uint64) iter.Seq2[eventstore.Record, error] {
	return func(func(eventstore.Record, error) bool) {}
}
func (s *genStore) ReadAll(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		for i := after.Commit + 1; i <= s.n; i++ {
			if !yield(s.rec(i), nil) {
				return
			}
		}
	}
}
func (s *genStore) Subscribe(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		if s.open != nil {
			select {
			case <-s.open:
			case <-ctx.Done():
				yield(eventstore.Record{}, ctx.Err())
				return
			}
		}
		for rec, err := range s.ReadAll(ctx, after) {
			if !yield(rec, err) {
				return
			}
		}
		<-ctx.Done()
		yield(eventstore.Record{}, ctx.Err())
	}
}
func (s *genStore) Head(context.Context) (eventstore.Position, error) {
	if !s.closed() {
		return eventstore.Start, nil
	}
	return eventstore.SeqPosition(s.n), nil
}
func (s *genStore) Close() error { return nil }

// hsetProjection writes one HSET per record, like the ceiling.
func hsetProjection(name string) Projection {
	return Define(name, 1, func(ctx context.Context, tx *Tx, rec eventstore.Record) error {
		tx.Pipe().HSet(ctx, tx.Key("s", rec.StreamID), "n", rec.Version)
		return nil
	})
}

// BenchmarkCatchUp runs 3 projections over the same log of N records from
// scratch, concurrently, and reports events/s per projection and in total,
// the ratio of the per-projection rate to the one-connection HSET ceiling
// measured in the same run, and peak heap and RSS.
func BenchmarkCatchUp(b *testing.B) {
	srv := redistest.Start(b)
	n := benchEvents()
	projections := 3
	if p, err := strconv.Atoi(os.Getenv("EVENTLINE_BENCH_PROJECTIONS")); err == nil && p > 0 {
		projections = p
	}
	ceiling := ceilingHSET(b, srv.Addr, n)
	var perProj, peakHeap, peakRSS float64
	for iter := range b.N {
		store := newGenStore(n)
		var clients []*redis.Client
		var rs []*running
		start := time.Now()
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
		for p := range projections {
			c := redis.NewClient(&redis.Options{Addr: srv.Addr})
			clients = append(clients, c)
			name := "bench" + strconv.Itoa(iter) + "_" + strconv.Itoa(p)
			r, err := NewRunner(Config{Store: store, Redis: c, Projection: hsetProjection(name), Logger: quietLogger()})
			if err != nil {
				b.Fatal(err)
			}
			rs = append(rs, startRunner(b, r))
		}
		for p := range projections {
			name := "bench" + strconv.Itoa(iter) + "_" + strconv.Itoa(p)
			waitUntil(b, 10*time.Minute, "catch-up", func() bool { return checkpointOf(clients[p], name).Commit == uint64(n) })
		}
		elapsed := time.Since(start)
		close(stopSampling)
		sampled.Wait()
		for _, x := range rs {
			_ = x.stop()
		}
		for _, c := range clients {
			_ = c.Close()
		}
		perProj = float64(n) / elapsed.Seconds()
	}
	b.ReportMetric(perProj, "events/s/projection")
	b.ReportMetric(perProj*float64(projections), "events/s")
	b.ReportMetric(ceiling, "ceiling-ops/s")
	b.ReportMetric(perProj/ceiling, "ratio/projection")
	b.ReportMetric(perProj*float64(projections)/ceiling, "ratio-total")
	b.ReportMetric(peakHeap/(1<<20), "peak-heap-MiB")
	b.ReportMetric(peakRSS/(1<<20), "peak-RSS-MiB")
}

// rss returns the process' resident set size in bytes (Linux), 0 elsewhere.
func rss() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return float64(kb) * 1024
		}
	}
	return 0
}

func BenchmarkLiveLag1000(b *testing.B) { benchLiveLag(b, 1000) }
func BenchmarkLiveLag5000(b *testing.B) { benchLiveLag(b, 5000) }

// benchLiveLag appends at a steady rate for EVENTLINE_BENCH_SECONDS (default
// 3) and measures, for every record, the time from its commit in the store
// (Record.RecordedAt) to the commit of its batch in Redis.
func benchLiveLag(b *testing.B, rate int) {
	srv := redistest.Start(b)
	secs := 3
	if s, err := strconv.Atoi(os.Getenv("EVENTLINE_BENCH_SECONDS")); err == nil && s > 0 {
		secs = s
	}
	ctx := context.Background()
	var p50, p99 float64
	for iter := range b.N {
		store := memory.New()
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
		name := "lag" + strconv.Itoa(iter)
		r, err := NewRunner(Config{Store: store, Redis: rdb, Projection: counts(name), Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		var mu sync.Mutex
		var lags []time.Duration
		r.afterCommit = func(batch []eventstore.Record) {
			now := time.Now()
			mu.Lock()
			for _, rec := range batch {
				lags = append(lags, now.Sub(rec.RecordedAt))
			}
			mu.Unlock()
		}
		x := startRunner(b, r)
		waitFor(b, rdb, name, eventstore.Start)
		// Append in ticks of 1 ms; each tick catches up to the schedule.
		total := rate * secs
		start := time.Now()
		tick := time.NewTicker(time.Millisecond)
		var last eventstore.Position
		for i := 0; i < total; {
			<-tick.C
			due := min(total, int(time.Since(start).Seconds()*float64(rate)))
			for ; i < due; i++ {
				res, err := store.Append(ctx, streamOf(i), eventstore.Any, event(i))
				if err != nil {
					b.Fatal(err)
				}
				last = res.Position
			}
		}
		tick.Stop()
		waitFor(b, rdb, name, last)
		_ = x.stop()
		_ = rdb.Close()
		slices.Sort(lags)
		p50 = lags[len(lags)/2].Seconds() * 1000
		p99 = lags[len(lags)*99/100].Seconds() * 1000
	}
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p99, "p99-ms")
}

// benchTarget is the Redis a benchmark runs on: one redis-server, or a
// Redis Cluster of 3 masters without replicas. open returns a new client
// (each runner has its own, as a process would); ceiling measures
// go-redis pipelined HSET of n keys, pipelines of 500, on it.
type benchTarget struct {
	open    func(b *testing.B) redis.UniversalClient
	ceiling func(b *testing.B, n int) float64
}

// benchTargets starts the benchmark's targets lazily, one per subbenchmark.
var benchTargets = []struct {
	name  string
	start func(b *testing.B) benchTarget
}{
	{"node", func(b *testing.B) benchTarget {
		srv := redistest.Start(b)
		return benchTarget{
			open:    func(b *testing.B) redis.UniversalClient { return redis.NewClient(&redis.Options{Addr: srv.Addr}) },
			ceiling: func(b *testing.B, n int) float64 { return ceilingHSET(b, srv.Addr, n) },
		}
	}},
	{"cluster", func(b *testing.B) benchTarget {
		c := redistest.StartCluster(b, redistest.ClusterOptions{Masters: 3})
		open := func(b *testing.B) redis.UniversalClient {
			rdb, err := redisurl.Open(c.URL)
			if err != nil {
				b.Fatal(err)
			}
			return rdb
		}
		return benchTarget{open: open, ceiling: func(b *testing.B, n int) float64 {
			rdb := open(b)
			defer rdb.Close()
			return ceilingPipelinedHSET(b, rdb, n)
		}}
	}},
}

// ceilingPipelinedHSET measures pipelined HSET on any client: on a cluster client,
// each pipeline of 500 is split by slot and sent to the masters in
// parallel, one connection each.
func ceilingPipelinedHSET(b *testing.B, rdb redis.UniversalClient, n int) float64 {
	ctx := context.Background()
	start := time.Now()
	for i := 0; i < n; {
		pipe := rdb.Pipeline()
		for j := 0; j < 500 && i < n; j, i = j+1, i+1 {
			pipe.HSet(ctx, "ceiling:"+strconv.Itoa(i%1000), "n", i)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkPartitionedCatchUp catches up one projection of 8 partitions
// over a log of N records (EVENTLINE_BENCH_EVENTS) with 1, 2 and 4 runners
// in this process, each with its own Redis client and its own shared log
// (the log is read once per runner, and each of its partitions skips the
// records of the others), against one redis-server (target=node) and a
// Redis Cluster of 3 masters (target=cluster). The runners first share
// the partitions over an empty log; the clock starts when the log opens, so
// the figure is the throughput of the settled group, not the handover. It
// reports events/s and the ratio to the pipelined HSET ceiling measured in
// the same run on the same target.
//
// partitions=1 is the same model unpartitioned, by one runner: the baseline.
func BenchmarkPartitionedCatchUp(b *testing.B) {
	for _, tg := range benchTargets {
		for _, c := range []struct{ parts, runners int }{{1, 1}, {8, 1}, {8, 2}, {8, 4}} {
			parts, runners := c.parts, c.runners
			b.Run("target="+tg.name+"/partitions="+strconv.Itoa(parts)+"/runners="+strconv.Itoa(runners), func(b *testing.B) {
				target := tg.start(b)
				n := benchEvents()
				ceiling := target.ceiling(b, n)
				var rate float64
				for iter := range b.N {
					rate = partitionedCatchUp(b, target, "pbench"+strconv.Itoa(iter), n, parts, runners)
				}
				b.ReportMetric(rate, "events/s")
				b.ReportMetric(ceiling, "ceiling-ops/s")
				b.ReportMetric(rate/ceiling, "ratio")
			})
		}
	}
}

// partitionedCatchUp is one catch-up of BenchmarkPartitionedCatchUp; it
// returns events/s.
func partitionedCatchUp(b *testing.B, target benchTarget, name string, n, parts, runners int) float64 {
	store := newGenStore(n)
	store.open = make(chan struct{})
	var clients []redis.UniversalClient
	var rs []*running
	var ids []string
	for i := range runners {
		c := target.open(b)
		clients = append(clients, c)
		r, err := NewRunner(Config{Store: eventstore.NewSharedLog(store, eventstore.SharedLogOptions{}), Redis: c,
			Projection: Partitioned(hsetProjection(name), parts, nil), ID: "r" + strconv.Itoa(i), Logger: quietLogger(),
			LeaseTTL: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, r.ID())
		rs = append(rs, startRunner(b, r))
	}
	waitUntil(b, time.Minute, "the runners to share the partitions", func() bool {
		if parts == 1 {
			return holderOf(clients[0], leaseKey(name, query.Version(1))) != ""
		}
		return spread(holders(clients[0], name, parts), ids...)
	})
	start := time.Now()
	close(store.open)
	v := query.ViewOf(clients[0], name, query.Version(1), parts)
	waitUntil(b, 10*time.Minute, "catch-up", func() bool {
		cp, err := v.Checkpoint(context.Background())
		return err == nil && cp.Commit == uint64(n)
	})
	rate := float64(n) / time.Since(start).Seconds()
	for _, x := range rs {
		_ = x.stop()
	}
	for _, c := range clients {
		_ = c.Close()
	}
	return rate
}

// BenchmarkPartitionFailover measures how long the partitions of a runner
// that goes away stay unapplied: two runners in this process share the 8
// partitions of a projection (LeaseTTL 1s, batches of 100) while events
// are appended; one of them is then either cancelled (death=cancel: it
// releases its leases and leaves the members) or crashes (death=crash: as
// a SIGKILL would, its leases and membership are left to expire). The
// figure, ms, runs from the death until every partition it held has
// committed a batch past its checkpoint at the death, applied by the
// survivor; the goal is under LeaseTTL plus one batch. ttl-ratio is ms over
// LeaseTTL.
func BenchmarkPartitionFailover(b *testing.B) {
	const ttl = time.Second
	for _, tg := range benchTargets {
		for _, death := range []string{"cancel", "crash"} {
			b.Run("target="+tg.name+"/death="+death, func(b *testing.B) {
				target := tg.start(b)
				rdb := target.open(b)
				defer rdb.Close()
				var total time.Duration
				for iter := range b.N {
					total += partitionFailover(b, rdb, "pfail"+strconv.Itoa(iter), ttl, death == "crash")
				}
				ms := float64(total.Milliseconds()) / float64(b.N)
				b.ReportMetric(ms, "ms")
				b.ReportMetric(ms/float64(ttl.Milliseconds()), "ttl-ratio")
			})
		}
	}
}

// partitionFailover is one death of BenchmarkPartitionFailover.
func partitionFailover(b *testing.B, rdb redis.UniversalClient, name string, ttl time.Duration, crash bool) time.Duration {
	const n = 8
	store := memory.New()
	app := startSteadyAppender(b, store)
	defer app.halt()
	mk := func(id string) *Runner {
		r, err := NewRunner(Config{Store: store, Redis: rdb, Projection: pcounts(name, n), ID: id, BatchSize: 100,
			LeaseTTL: ttl, Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		return r
	}
	survivor := startRunner(b, mk("a"))
	defer survivor.stop()
	dying := mk("b")
	dying.noRelease = crash
	d := startRunner(b, dying)
	waitUntil(b, time.Minute, "two runners to share the partitions", func() bool { return spread(holders(rdb, name, n), "a", "b") })
	v := query.ViewOf(rdb, name, query.Version(1), n)
	ctx := context.Background()
	waitUntil(b, time.Minute, "every partition's first batches", func() bool {
		cp, err := v.Checkpoint(ctx)
		return err == nil && cp.Commit > 0
	})
	var held []int
	for p, h := range holders(rdb, name, n) {
		if h == "b" {
			held = append(held, p)
		}
	}
	died := time.Now()
	_ = d.stop()
	// Read once the dying runner wrote its last batch.
	at, err := v.Checkpoints(ctx)
	if err != nil {
		b.Fatal(err)
	}
	waitUntil(b, time.Minute, "the survivor to apply the dead runner's partitions", func() bool {
		cps, err := v.Checkpoints(ctx)
		if err != nil {
			return false
		}
		for _, p := range held {
			if !at[p].Before(cps[p]) {
				return false
			}
		}
		return true
	})
	return time.Since(died)
}

// BenchmarkCartKeyBytes measures what one cart of the sample's carts model
// costs in Redis memory: 100,000 hashes shaped like a checked-out cart with
// 5 lines (version, customer_id, status, order_id, and q:, p:, o: per
// product: 19 fields), under a partition's key prefix, written by pipelined
// HSET; bytes/key is the growth of used_memory divided by the keys.
func BenchmarkCartKeyBytes(b *testing.B) {
	srv := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	ctx := context.Background()
	const keys = 100_000
	used := func() float64 {
		info := rdb.Info(ctx, "memory").Val()
		for line := range strings.Lines(info) {
			if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
				n, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				return n
			}
		}
		b.Fatal("no used_memory in INFO")
		return 0
	}
	var per float64
	for iter := range b.N {
		rdb.FlushAll(ctx)
		before := used()
		pipe := rdb.Pipeline()
		for i := range keys {
			id := fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", i, iter, i%4096, i%4096, i)
			fields := []any{"version", 12, "customer_id", "c0ffee00-" + id[9:], "status", "checked_out", "order_id", "0rder000-" + id[9:]}
			for p := range 5 {
				prod := "sku-" + strconv.Itoa(1000+p*37+i%50)
				fields = append(fields, "q:"+prod, 1+p, "p:"+prod, 1999+p*100, "o:"+prod, 2+p)
			}
			pipe.HSet(ctx, query.PartitionKey("carts", query.Version(1), query.Partition{Index: i % 8, Count: 8}, "cart", id), fields...)
			if pipe.Len() == 500 {
				if _, err := pipe.Exec(ctx); err != nil {
					b.Fatal(err)
				}
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		per = (used() - before) / keys
	}
	b.ReportMetric(per, "bytes/key")
}

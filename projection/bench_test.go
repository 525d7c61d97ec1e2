package projection

import (
	"context"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/eventstore/sqlite"
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
	// url names it for a projector process (redisurl).
	url     string
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
			url:     srv.URL,
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
		return benchTarget{url: c.URL, open: open, ceiling: func(b *testing.B, n int) float64 {
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
// over a SQLite log of N records (EVENTLINE_BENCH_EVENTS) with 1, 2 and 4
// projector processes (this test binary run again, benchChild), each with
// its own Redis client and one eventstore.SharedLog over the log file, so
// the log is read once per process and each partition runner skips the
// records of the others; against one redis-server (target=node) and a
// Redis Cluster of 3 masters (target=cluster). The log is written before
// the processes start, and they see it empty until told to go: they first
// share the partitions, and the clock starts when the log opens, so the
// figure is the throughput of the settled group, not the handover. It
// reports events/s and the ratio to the pipelined HSET ceiling measured in
// the same run on the same target. With EVENTLINE_BENCH_CPUPROFILE_DIR set,
// every process writes a CPU profile of its catch-up there.
//
// partitions=1 is the same model unpartitioned, by one process: the baseline.
func BenchmarkPartitionedCatchUp(b *testing.B) {
	n := benchEvents()
	db := filepath.Join(b.TempDir(), "events.db")
	writeBenchLog(b, db, n)
	for _, tg := range benchTargets {
		for _, c := range []struct{ parts, procs int }{{1, 1}, {8, 1}, {8, 2}, {8, 4}} {
			parts, procs := c.parts, c.procs
			run := "target=" + tg.name + "/partitions=" + strconv.Itoa(parts) + "/processes=" + strconv.Itoa(procs)
			b.Run(run, func(b *testing.B) {
				target := tg.start(b)
				ceiling := target.ceiling(b, n)
				var rate float64
				for iter := range b.N {
					profile := strings.NewReplacer("/", "-", "=", "").Replace(run) + "-" + strconv.Itoa(iter)
					rate = partitionedCatchUp(b, target, db, "pbench"+strconv.Itoa(iter), n, parts, procs, profile)
				}
				b.ReportMetric(rate, "events/s")
				b.ReportMetric(ceiling, "ceiling-ops/s")
				b.ReportMetric(rate/ceiling, "ratio")
			})
		}
	}
}

// partitionedCatchUp is one catch-up of BenchmarkPartitionedCatchUp by
// procs processes; it returns events/s.
func partitionedCatchUp(b *testing.B, target benchTarget, db, name string, n, parts, procs int, profile string) float64 {
	rdb := target.open(b)
	defer rdb.Close()
	var ps []*benchProc
	var ids []string
	for i := range procs {
		id := "r" + strconv.Itoa(i)
		ids = append(ids, id)
		ps = append(ps, startBenchProc(b, benchChildArgs{DB: db, URL: target.url, Name: name, ID: id, Partitions: parts,
			Model: "hset", LeaseTTL: time.Second, Gated: true, CPUProfile: benchProfile(profile, id)}))
	}
	waitUntil(b, time.Minute, "the processes to share the partitions", func() bool {
		if parts == 1 {
			return holderOf(rdb, leaseKey(name, query.Version(1))) != ""
		}
		return spread(holders(rdb, name, parts), ids...)
	})
	start := time.Now()
	for _, p := range ps {
		p.send(b, "go")
	}
	v := query.ViewOf(rdb, name, query.Version(1), parts)
	waitUntil(b, 10*time.Minute, "catch-up", func() bool {
		cp, err := v.Checkpoint(context.Background())
		return err == nil && cp.Commit == uint64(n)
	})
	rate := float64(n) / time.Since(start).Seconds()
	for _, p := range ps {
		p.stop(b)
	}
	return rate
}

// BenchmarkPartitionFailover measures how long the partitions of a
// projector process that goes away stay unapplied: two processes
// (benchChild) share the 8 partitions of a projection (LeaseTTL 1s, batches
// of 100) while the benchmark appends events to their SQLite log; one of
// them is then either stopped by SIGTERM (death=cancel: it releases its
// leases and leaves the members) or killed by SIGKILL (death=crash: its
// leases and membership are left to expire). The figure, ms, runs from the
// signal until every partition the dead process held has committed a batch
// past its checkpoint at the death, applied by the survivor; the goal is
// under LeaseTTL plus one batch. ttl-ratio is ms over LeaseTTL.
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
					total += partitionFailover(b, target, rdb, "pfail"+strconv.Itoa(iter), ttl, death == "crash")
				}
				ms := float64(total.Milliseconds()) / float64(b.N)
				b.ReportMetric(ms, "ms")
				b.ReportMetric(ms/float64(ttl.Milliseconds()), "ttl-ratio")
			})
		}
	}
}

// partitionFailover is one death of BenchmarkPartitionFailover.
func partitionFailover(b *testing.B, target benchTarget, rdb redis.UniversalClient, name string, ttl time.Duration, crash bool) time.Duration {
	const n = 8
	ctx := context.Background()
	db := filepath.Join(b.TempDir(), "events.db")
	store, err := sqlite.Open(ctx, sqlite.Config{Path: db, Sync: sqlite.SyncNormal, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	app := startSteadyAppender(b, store)
	defer app.halt()
	start := func(id string) *benchProc {
		return startBenchProc(b, benchChildArgs{DB: db, URL: target.url, Name: name, ID: id, Partitions: n,
			Model: "counts", BatchSize: 100, LeaseTTL: ttl})
	}
	survivor := start("a")
	defer survivor.stop(b)
	dying := start("b")
	waitUntil(b, time.Minute, "two processes to share the partitions", func() bool { return spread(holders(rdb, name, n), "a", "b") })
	v := query.ViewOf(rdb, name, query.Version(1), n)
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
	if crash {
		dying.signal(b, syscall.SIGKILL)
	} else {
		dying.signal(b, syscall.SIGTERM)
	}
	// Read once the dying process is gone: it wrote its last batch.
	at, err := v.Checkpoints(ctx)
	if err != nil {
		b.Fatal(err)
	}
	waitUntil(b, time.Minute, "the survivor to apply the dead process' partitions", func() bool {
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

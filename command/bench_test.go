package command_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
)

// The benchmarks' domain: a tally that accepts every addition, so that what is
// measured is the handler and the store, not domain rules.

type tallyCommand struct {
	N    int
	Peek bool // decide nothing: measures load, fold and decide without a write
}

type tallyAdded struct{ N int }

var tally = command.Decider[int, tallyCommand, tallyAdded]{
	Initial: func() int { return 0 },
	Decide: func(s int, c tallyCommand) ([]tallyAdded, error) {
		if c.Peek {
			return nil, nil
		}
		return []tallyAdded{{N: c.N}}, nil
	},
	Evolve: func(s int, e tallyAdded) int { return s + e.N },
}

func tallyRegistry() *eventstore.Registry {
	r := eventstore.NewRegistry()
	eventstore.Register[tallyAdded](r, "tally.added")
	return r
}

// hotStreamLen is how many commands the one-stream benchmarks send to a stream
// before moving to the next: the longest a cart gets (about 200 events for 100
// lines). Without it the stream would grow with b.N and the benchmark would
// measure ever longer loads instead of contention.
const hotStreamLen = 200

// BenchmarkHandle measures commands/s and latency through Handler.Handle (load,
// fold, decide, append with the exact version, retry on conflict, default
// Config), with 1 or 64 callers, all on one stream or spread over 10,000.
// Beside it, raw-append is the store's own ceiling for the same shape: one
// event appended with eventstore.Any, no load.
func BenchmarkHandle(b *testing.B) {
	for _, be := range backends {
		for _, streams := range []int{1, 10000} {
			for _, callers := range []int{1, 64} {
				name := fmt.Sprintf("%s/streams=%d/callers=%d", be.name, streams, callers)
				b.Run(name+"/handle", func(b *testing.B) { benchHandle(b, be, streams, callers, false) })
				b.Run(name+"/raw-append", func(b *testing.B) { benchHandle(b, be, streams, callers, true) })
			}
		}
	}
}

func entityOf(i, streams int) string {
	if streams == 1 {
		return fmt.Sprintf("hot%d", i/hotStreamLen)
	}
	return fmt.Sprintf("s%d", i%streams)
}

func benchHandle(b *testing.B, be backend, streams, callers int, raw bool) {
	ctx := context.Background()
	counted := &hookStore{Store: be.open(b)}
	h, err := command.NewHandler(counted, tallyRegistry(), tally, command.Config{Name: "tally"})
	if err != nil {
		b.Fatal(err)
	}
	ev, err := tallyRegistry().Encode(tallyAdded{N: 1})
	if err != nil {
		b.Fatal(err)
	}
	var next, conflicts atomic.Int64
	latencies := make([][]time.Duration, callers)
	var failed error
	var failOnce sync.Once
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range callers {
		wg.Go(func() {
			lat := make([]time.Duration, 0, b.N/callers+1)
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					break
				}
				id := entityOf(i, streams)
				t0 := time.Now()
				var err error
				if raw {
					_, err = counted.Store.Append(ctx, "tally-"+id, eventstore.Any, ev)
				} else {
					_, err = h.Handle(ctx, id, tallyCommand{N: 1})
				}
				lat = append(lat, time.Since(t0))
				if errors.Is(err, command.ErrConflict) {
					conflicts.Add(1)
				} else if err != nil {
					failOnce.Do(func() { failed = err })
				}
			}
			latencies[w] = lat
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if failed != nil {
		b.Fatal(failed)
	}
	reportLatency(b, elapsed, slices.Concat(latencies...), "cmds/s")
	if !raw {
		b.ReportMetric(float64(counted.appends.Load())/float64(b.N), "appends/cmd")
		b.ReportMetric(float64(conflicts.Load())/float64(b.N), "gaveup/cmd")
	}
}

func reportLatency(b *testing.B, elapsed time.Duration, lat []time.Duration, unit string) {
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), unit)
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op") // the per-op time of a concurrent run misleads; use the rate
}

// BenchmarkLoad measures what a command costs on a long stream: load and fold
// a stream of 100, 1,000 or 10,000 events and decide nothing (no write), with
// the state cache off (handle: a stream's first command) and on
// (handle-cached: every later one, which reads only what is new). Beside it,
// raw-read iterates the same stream without decoding: the store's ceiling.
func BenchmarkLoad(b *testing.B) {
	for _, be := range backends {
		for _, n := range []int{100, 1000, 10000} {
			b.Run(fmt.Sprintf("%s/events=%d", be.name, n), func(b *testing.B) {
				ctx := context.Background()
				store := be.open(b)
				// Without the state cache: the cost of a stream's first command,
				// or of any command after the stream's entry was evicted.
				h, err := command.NewHandler(store, tallyRegistry(), tally, command.Config{Name: "tally", NoCache: true})
				if err != nil {
					b.Fatal(err)
				}
				cached, err := command.NewHandler(store, tallyRegistry(), tally, command.Config{Name: "tally"})
				if err != nil {
					b.Fatal(err)
				}
				ev, _ := tallyRegistry().Encode(tallyAdded{N: 1})
				batch := make([]eventstore.Event, 100)
				for i := 0; i < n; i += len(batch) {
					for j := range batch {
						batch[j] = ev
						batch[j].ID = [16]byte{}
					}
					if _, err := store.Append(ctx, "tally-long", eventstore.Any, batch...); err != nil {
						b.Fatal(err)
					}
				}
				b.Run("handle", func(b *testing.B) {
					for b.Loop() {
						res, err := h.Handle(ctx, "long", tallyCommand{Peek: true})
						if err != nil || res.Version != uint64(n) {
							b.Fatalf("%+v, %v", res, err)
						}
					}
					b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
				})
				b.Run("handle-cached", func(b *testing.B) {
					for b.Loop() {
						res, err := cached.Handle(ctx, "long", tallyCommand{Peek: true})
						if err != nil || res.Version != uint64(n) {
							b.Fatalf("%+v, %v", res, err)
						}
					}
				})
				b.Run("raw-read", func(b *testing.B) {
					for b.Loop() {
						count := 0
						for _, err := range store.ReadStream(ctx, "tally-long", 1) {
							if err != nil {
								b.Fatal(err)
							}
							count++
						}
						if count != n {
							b.Fatalf("read %d events, want %d", count, n)
						}
					}
					b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
				})
			})
		}
	}
}

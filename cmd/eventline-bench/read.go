package main

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/query"
)

// genStore is a log of n synthetic records made on the fly, so that the
// synthetic catch-up and the rebuild measure the runner, not a store. Record i
// (1..n) is version i/genStreams+1 of stream s-<i mod genStreams>.
type genStore struct {
	n  uint64
	t0 time.Time
}

const genStreams = 1000

func (s *genStore) rec(i uint64) eventstore.Record {
	return eventstore.Record{Event: eventstore.Event{Type: "bench.counted"}, StreamID: "s-" + strconv.FormatUint(i%genStreams, 10),
		Version: i/genStreams + 1, Position: eventstore.SeqPosition(i), RecordedAt: s.t0}
}

// lastVersions returns, for each stream of the log, the version of its last
// record: what a projection keeping "the stream's version" must end with.
func (s *genStore) lastVersions() map[string]uint64 {
	want := map[string]uint64{}
	for i := s.n; i >= 1 && len(want) < genStreams; i-- {
		r := s.rec(i)
		if _, ok := want[r.StreamID]; !ok {
			want[r.StreamID] = r.Version
		}
	}
	return want
}

func (s *genStore) Append(context.Context, string, eventstore.ExpectedVersion, ...eventstore.Event) (eventstore.AppendResult, error) {
	return eventstore.AppendResult{}, fmt.Errorf("synthetic log is read-only: %w", eventstore.ErrUnavailable)
}

func (s *genStore) ReadStream(context.Context, string, uint64) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		yield(eventstore.Record{}, eventstore.ErrStreamNotFound)
	}
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

// versionProjection keeps, per stream, the version of its last record in a
// hash: one HSET per record, like the ceiling.
func versionProjection(name string, version int) projection.Projection {
	return projection.Define(name, version, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record) error {
		tx.Pipe().HSet(ctx, tx.Key("s", rec.StreamID), "v", rec.Version)
		return nil
	})
}

// checkVersions reports whether version of projection name holds want.
func checkVersions(ctx context.Context, rdb redis.Cmdable, name string, version int, want map[string]uint64) (bool, error) {
	pipe := rdb.Pipeline()
	cmds := map[string]*redis.StringCmd{}
	for stream := range want {
		cmds[stream] = pipe.HGet(ctx, query.Key(name, query.Version(version), "s", stream), "v")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return false, err
	}
	for stream, v := range want {
		got, err := cmds[stream].Uint64()
		if err != nil || got != v {
			return false, nil
		}
	}
	return true, nil
}

// runners runs projection runners until stop is called.
type runners struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	errs   []error
}

func startRunners(ctx context.Context, cfgs []projection.Config) (*runners, error) {
	ctx, cancel := context.WithCancel(ctx)
	rs := &runners{cancel: cancel}
	for _, cfg := range cfgs {
		r, err := projection.NewRunner(cfg)
		if err != nil {
			cancel()
			rs.wg.Wait()
			return nil, err
		}
		rs.wg.Go(func() {
			if err := r.Run(ctx); err != nil {
				rs.mu.Lock()
				rs.errs = append(rs.errs, fmt.Errorf("projection %s: %w", cfg.Projection.Name(), err))
				rs.mu.Unlock()
			}
		})
	}
	return rs, nil
}

// err returns the errors the runners stopped with so far.
func (rs *runners) err() error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return errors.Join(rs.errs...)
}

// stop stops every runner and waits for them; it returns their errors.
func (rs *runners) stop() error {
	rs.cancel()
	rs.wg.Wait()
	return rs.err()
}

// waitCheckpoints waits until the active version of every projection named
// has applied position, polling every 2 ms, and returns when that was seen.
// It gives up when a runner stopped with an error or after limit.
func waitCheckpoints(ctx context.Context, rdb redis.Cmdable, rs *runners, names []string, position eventstore.Position, limit time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	pending := slices.Clone(names)
	for {
		pending = slices.DeleteFunc(pending, func(name string) bool {
			v, err := query.Resolve(ctx, rdb, name)
			if err != nil {
				return false
			}
			cp, err := v.Checkpoint(ctx)
			return err == nil && !cp.Before(position)
		})
		if len(pending) == 0 {
			return time.Now(), nil
		}
		if err := rs.err(); err != nil {
			return time.Time{}, err
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("waiting for %s to reach %s: %w", strings.Join(pending, ", "), position, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// lagResult is a live-lag run.
type lagResult struct {
	events  int
	achieve float64 // events/s actually appended
	lat     []time.Duration
	err     error
}

// liveLag appends to store at a steady rate for d, from a pool of appenders,
// while a runner of a version projection follows; a reader polls the
// checkpoint in Redis every 250µs. An event's lag is the time from the moment
// its append was issued to the first poll that saw the checkpoint at or past
// its position: append, commit, subscription, batch, EXEC and the reader's
// round trip, as a client of the query side would experience it.
func liveLag(ctx context.Context, store eventstore.Store, rdb redis.UniversalClient, name string, rate int, d time.Duration, log *slog.Logger) lagResult {
	rs, err := startRunners(ctx, []projection.Config{{Store: store, Redis: rdb, Projection: versionProjection(name, 1), Logger: log}})
	if err != nil {
		return lagResult{err: err}
	}
	defer rs.stop()
	head, err := store.Head(ctx)
	if err != nil {
		return lagResult{err: err}
	}
	if _, err := waitCheckpoints(ctx, rdb, rs, []string{name}, head, time.Minute); err != nil {
		return lagResult{err: err}
	}

	type seen struct {
		at         time.Time
		checkpoint eventstore.Position
	}
	var (
		observed []seen
		pollDone = make(chan error, 1)
		// final receives the last position appended; the reader stops once it
		// has seen the checkpoint reach it.
		final = make(chan eventstore.Position, 1)
	)
	go func() {
		pctx, cancel := context.WithTimeout(ctx, d+2*time.Minute)
		defer cancel()
		var target *eventstore.Position
		for {
			cp, err := query.ReadCheckpoint(pctx, rdb, name, query.Version(1))
			if err == nil && (len(observed) == 0 || observed[len(observed)-1].checkpoint != cp) {
				observed = append(observed, seen{time.Now(), cp})
			}
			if target != nil && err == nil && !cp.Before(*target) {
				pollDone <- nil
				return
			}
			select {
			case p := <-final:
				target = &p
			case <-pctx.Done():
				pollDone <- fmt.Errorf("live lag: checkpoint did not reach the last append: %w", pctx.Err())
				return
			case <-time.After(250 * time.Microsecond):
			}
		}
	}()

	total := int(float64(rate) * d.Seconds())
	issued := make([]time.Time, total)
	positions := make([]eventstore.Position, total)
	var failed atomic.Value
	work := make(chan int, total)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := range work {
				res, err := store.Append(ctx, name+"-"+strconv.Itoa(i%1000), eventstore.Any,
					eventstore.Event{Type: "bench.counted", Data: benchData})
				if err != nil {
					failed.CompareAndSwap(nil, err)
					continue
				}
				positions[i] = res.Position
			}
		})
	}
	// Issue appends in ticks of 1 ms; each tick catches up to the schedule.
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	for i := 0; i < total; {
		<-tick.C
		due := min(total, int(time.Since(start).Seconds()*float64(rate)))
		for ; i < due; i++ {
			issued[i] = time.Now()
			work <- i
		}
	}
	tick.Stop()
	close(work)
	wg.Wait()
	achieved := float64(total) / time.Since(start).Seconds()
	final <- slices.MaxFunc(positions, func(a, b eventstore.Position) int { return a.Compare(b) })
	if err := <-pollDone; err != nil {
		return lagResult{err: errors.Join(err, rs.err())}
	}
	if e, ok := failed.Load().(error); ok {
		return lagResult{err: e}
	}
	lat := make([]time.Duration, 0, total)
	for i := range total {
		k, _ := slices.BinarySearchFunc(observed, positions[i], func(s seen, p eventstore.Position) int {
			return s.checkpoint.Compare(p)
		})
		if k == len(observed) {
			return lagResult{err: fmt.Errorf("position %s never seen by the reader", positions[i])}
		}
		lat = append(lat, observed[k].at.Sub(issued[i]))
	}
	slices.Sort(lat)
	return lagResult{events: total, achieve: achieved, lat: lat, err: rs.err()}
}

// peakRSS tracks the peak resident set size of the process from reset to
// read: the kernel's VmHWM, reset through /proc/self/clear_refs, and a
// sampled VmRSS as a fallback where that is not allowed.
type peakRSS struct {
	stop    chan struct{}
	done    chan struct{}
	sampled atomic.Int64
	hwm     bool
}

func startPeakRSS() *peakRSS {
	p := &peakRSS{stop: make(chan struct{}), done: make(chan struct{})}
	p.hwm = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	go func() {
		defer close(p.done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if kb := procStatusKB("VmRSS:"); kb > p.sampled.Load() {
				p.sampled.Store(kb)
			}
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

// end stops sampling and returns the peak in MiB and how it was measured.
func (p *peakRSS) end() (float64, string) {
	close(p.stop)
	<-p.done
	if p.hwm {
		if kb := procStatusKB("VmHWM:"); kb > 0 {
			return float64(kb) / 1024, "VmHWM"
		}
	}
	return float64(p.sampled.Load()) / 1024, "sampled VmRSS"
}

// procStatusKB reads a "<field> <n> kB" line of /proc/self/status; 0 when
// there is none (not Linux).
func procStatusKB(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

// parsePhases reads --phases: a comma-separated list of phase names, or ""
// for all of them.
func parsePhases(s string) (map[string]bool, error) {
	if s == "" {
		return nil, nil
	}
	sel := map[string]bool{}
	for name := range strings.SplitSeq(s, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(phases, name) {
			return nil, fmt.Errorf("--phases: unknown phase %q: want some of %s", name, strings.Join(phases, ", "))
		}
		sel[name] = true
	}
	return sel, nil
}

// wants reports whether the run measures phase: every phase when --phases
// was not given.
func (b *bench) wants(phase string) bool {
	return len(b.cfg.Phases) == 0 || b.cfg.Phases[phase]
}

// wantsSample reports whether any phase that uses the sample application
// runs.
func (b *bench) wantsSample() bool {
	for _, p := range []string{phaseHTTP1, phaseHTTP64, phaseLib1, phaseLib64, phaseCatchUp, phaseQuery, phaseRebuildSample} {
		if b.wants(p) {
			return true
		}
	}
	return false
}

// wantsWorkload reports whether the command workload of phase runs: when it
// is selected, and for the fastest one (command.Handler, 64 callers) when
// only read phases are, since they read the events it writes.
func (b *bench) wantsWorkload(phase string) bool {
	if b.wants(phase) {
		return true
	}
	if phase != phaseLib64 {
		return false
	}
	for _, p := range []string{phaseHTTP1, phaseHTTP64, phaseLib1} {
		if b.wants(p) {
			return false
		}
	}
	return true
}

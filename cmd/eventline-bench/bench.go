package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/sqlite"
	"github.com/eventline/eventline/internal/cputime"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/query"
	"github.com/eventline/eventline/redisurl"
	"github.com/eventline/eventline/sample/app"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/http/commandapi"
	"github.com/eventline/eventline/sample/http/queryapi"
	"github.com/eventline/eventline/sample/readmodel"
	"github.com/eventline/eventline/sample/readmodel/schema"
)

// config sizes one run. presets gives the modes' sizes.
type config struct {
	Mode string
	// RedisURL names a Redis whose database must be empty; "" starts a private
	// redis-server.
	RedisURL string
	// TempDir is where the run's temporary directory goes ("" the system's).
	TempDir string

	RawRows, HSETOps, RTTOps int
	Appends1, Appends64      int
	// Carts is the size of the cart workload at 64 callers, Carts1 at 1
	// caller, where synchronous=FULL costs a whole fsync per command.
	Carts, Carts1 int
	// FsyncDuration is the length of the synced-writes ceiling.
	FsyncDuration   time.Duration
	SyntheticEvents int
	RebuildEvents   int
	// HTTPDuration is the length of each timed HTTP loop (ceiling and query).
	HTTPDuration time.Duration
	LagDuration  time.Duration
	LagRates     []int

	// Phases, when not empty, selects the phases to run; see wants.
	Phases map[string]bool

	// CPUProfile, when set, receives a CPU profile of the phase ProfilePhase.
	CPUProfile, ProfilePhase string
	// Progress receives one line per phase; Logger the framework's logs.
	Progress io.Writer
	Logger   *slog.Logger
}

// presets are the sizes of each mode. full is what docs/benchmarks.md
// reports; quick is for CI smoke runs; tiny is for the package's test.
var presets = map[string]config{
	"full": {RawRows: 300_000, HSETOps: 1_000_000, RTTOps: 20_000, Appends1: 5_000, Appends64: 150_000,
		Carts: 10_000, Carts1: 1_000, FsyncDuration: 2 * time.Second, SyntheticEvents: 1_000_000, RebuildEvents: 1_000_000,
		HTTPDuration: 5 * time.Second, LagDuration: 10 * time.Second, LagRates: []int{1000, 5000}},
	"quick": {RawRows: 50_000, HSETOps: 200_000, RTTOps: 5_000, Appends1: 1_000, Appends64: 20_000,
		Carts: 500, Carts1: 100, FsyncDuration: 500 * time.Millisecond, SyntheticEvents: 100_000, RebuildEvents: 50_000,
		HTTPDuration: time.Second, LagDuration: 2 * time.Second, LagRates: []int{1000, 5000}},
	// tiny runs every phase and checks every result at sizes that only need
	// to be more than one batch or pipeline; the package's test runs it
	// under -race, on machines that may be busy.
	"tiny": {RawRows: 500, HSETOps: 1_000, RTTOps: 50, Appends1: 50, Appends64: 256,
		Carts: 40, Carts1: 10, FsyncDuration: 100 * time.Millisecond, SyntheticEvents: 1_000, RebuildEvents: 1_000,
		HTTPDuration: 100 * time.Millisecond, LagDuration: 200 * time.Millisecond, LagRates: []int{1000, 5000}},
}

// Phases, for --profile-phase.
const (
	phaseCeilings = "ceilings"
	phaseAppends  = "appends"
	phaseHTTP1    = "commands-http-1"
	phaseHTTP64   = "commands-http-64"
	phaseLib1     = "commands-lib-1"
	phaseLib64    = "commands-lib-64"
	// The same with synchronous=NORMAL, on a store of their own.
	phaseLib1Normal  = "commands-lib-1-normal"
	phaseLib64Normal = "commands-lib-64-normal"
	phaseCatchUp     = "catchup-sample"
	phaseQuery       = "query"
	phaseSynthetic   = "catchup-synthetic"
	phaseLag         = "lag"
	phaseRebuild     = "rebuild"
	// phaseRebuildSample rebuilds each sample model alone over the SQLite log.
	phaseRebuildSample = "rebuild-sample"
	defaultProfiled    = phaseHTTP64
)

var phases = []string{phaseCeilings, phaseAppends, phaseHTTP1, phaseHTTP64, phaseLib1, phaseLib1Normal, phaseLib64, phaseLib64Normal,
	phaseCatchUp, phaseQuery, phaseRebuildSample, phaseSynthetic, phaseLag, phaseRebuild}

// bench is one run in progress.
type bench struct {
	cfg   config
	rep   *Report
	dir   string
	ropts *redis.Options
	rdb   *redis.Client
	reg   *eventstore.Registry
	log   *slog.Logger
	// redisPID is the private redis-server's process id, 0 for a given one.
	redisPID int
}

// redisCPU returns the CPU time the private redis-server used so far, -1
// when it is not known (a given server, or no /proc).
func (b *bench) redisCPU() time.Duration {
	if b.redisPID == 0 {
		return -1
	}
	return procCPU(b.redisPID)
}

// run measures everything cfg asks for and returns the report. Errors that
// stop a phase end the run; a wrong result is reported as "NO", not an error.
func run(ctx context.Context, cfg config) (*Report, error) {
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	b := &bench{cfg: cfg, log: cfg.Logger, reg: app.NewRegistry(),
		rep: &Report{Mode: cfg.Mode, Generator: generatorName, Started: time.Now(), LoadStart: loadAvg()}}
	var err error
	if b.dir, err = os.MkdirTemp(cfg.TempDir, "eventline-bench-*"); err != nil {
		return nil, err
	}
	defer os.RemoveAll(b.dir)

	if cfg.RedisURL != "" {
		o, err := redisurl.Parse(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("--redis-url: %w", err)
		}
		if o.Cluster != nil {
			// The ceilings (pipelines on one connection) and the empty-database
			// check are those of one server.
			return nil, fmt.Errorf("--redis-url: the benchmark measures one Redis server; a Redis Cluster URL is not supported")
		}
		b.ropts = o.Single
		b.rep.Redis = "given: " + b.ropts.Addr
	} else {
		rdir := filepath.Join(b.dir, "redis")
		if err := os.Mkdir(rdir, 0o755); err != nil {
			return nil, err
		}
		srv, err := startRedis(ctx, rdir)
		if err != nil {
			return nil, err
		}
		defer srv.stop()
		b.redisPID = srv.cmd.Process.Pid
		b.ropts = &redis.Options{Addr: srv.Addr}
		b.rep.Redis = "private redis-server at " + srv.Addr
	}
	if v, err := redisVersion(ctx, b.ropts); err == nil {
		b.rep.Redis += " (" + v + ")"
	}
	o := *b.ropts
	o.PoolSize = 256
	b.rdb = redis.NewClient(&o)
	defer b.rdb.Close()
	if n, err := b.rdb.DBSize(ctx).Result(); err != nil {
		return nil, fmt.Errorf("redis at %s: %w", b.ropts.Addr, err)
	} else if n != 0 {
		return nil, fmt.Errorf("redis at %s holds %d keys: the benchmark needs an empty database", b.ropts.Addr, n)
	}

	steps := []struct {
		phase string
		fn    func(context.Context) error
	}{
		{phaseCeilings, b.ceilings},
		{phaseAppends, b.appends},
	}
	for _, s := range steps {
		if s.phase != phaseCeilings && !b.wants(s.phase) {
			continue
		}
		if err := b.phase(ctx, s.phase, s.fn); err != nil {
			return nil, err
		}
	}
	if b.wantsSample() {
		if err := b.sample(ctx); err != nil {
			return nil, err
		}
	}
	for _, s := range []struct {
		phase string
		fn    func(context.Context) error
	}{
		{phaseSynthetic, b.syntheticCatchUp},
		{phaseLag, b.lag},
		{phaseRebuild, b.rebuild},
	} {
		if !b.wants(s.phase) {
			continue
		}
		if err := b.phase(ctx, s.phase, s.fn); err != nil {
			return nil, err
		}
	}
	rank := map[string]int{"ceiling": 0, "write": 1, "read": 2, "rebuild": 3}
	slices.SortStableFunc(b.rep.Rows, func(x, y Row) int { return rank[x.Group] - rank[y.Group] })
	b.rep.Duration = time.Since(b.rep.Started)
	b.rep.LoadAvg = loadAvg()
	return b.rep, nil
}

// phase runs fn, under the CPU profiler when it is the profiled phase, and
// records the CPU time the phase took in this process and in redis-server.
func (b *bench) phase(ctx context.Context, name string, fn func(context.Context) error) error {
	fmt.Fprintf(b.cfg.Progress, "eventline-bench: %s (load %s)\n", name, loadAvg())
	start, self, redisCPU := time.Now(), cputime.Process(), b.redisCPU()
	defer func() {
		st := PhaseStat{Name: name, Wall: time.Since(start), SelfCPU: cputime.Process() - self, RedisCPU: -1, LoadAvg: loadAvg()}
		if r := b.redisCPU(); r >= 0 && redisCPU >= 0 {
			st.RedisCPU = r - redisCPU
		}
		b.rep.Phases = append(b.rep.Phases, st)
	}()
	if b.cfg.CPUProfile != "" && b.cfg.ProfilePhase == name {
		f, err := os.Create(b.cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if err := fn(ctx); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func (b *bench) ceilings(ctx context.Context) error {
	if !b.wants(phaseCeilings) {
		// Every row's ratio is to these ceilings: measure them in every run
		// that has such rows.
		if err := b.hsetCeiling(ctx); err != nil {
			return err
		}
		if b.wantsHTTP() {
			return b.httpCeilings(ctx)
		}
		return nil
	}
	raw, err := sqliteTx100(ctx, b.dir, "NORMAL", b.cfg.RawRows)
	if err != nil {
		return fmt.Errorf("raw sqlite: %w", err)
	}
	b.rep.add(Row{Group: "ceiling", ID: "sqlite-tx100", What: "raw modernc.org/sqlite inserts, tx of 100, WAL NORMAL", Value: raw, Unit: "rows/s",
		Note: fmt.Sprintf("%s rows, store-like table and indexes", thousands(int64(b.cfg.RawRows)))})
	rawFull, err := sqliteTx100(ctx, b.dir, "FULL", b.cfg.RawRows)
	if err != nil {
		return fmt.Errorf("raw sqlite, synchronous=FULL: %w", err)
	}
	b.rep.add(Row{Group: "ceiling", ID: "sqlite-tx100-full", What: "raw modernc.org/sqlite inserts, tx of 100, WAL FULL", Value: rawFull, Unit: "rows/s",
		Note: "the same, with an fsync of the WAL per transaction"})
	synced, err := syncedWrites(b.dir, b.cfg.FsyncDuration)
	if err != nil {
		return fmt.Errorf("synced writes: %w", err)
	}
	b.rep.add(Row{Group: "ceiling", ID: "fsync", What: "synced 4 KiB overwrites in a file (write + fsync)", Value: synced, Unit: "writes/s",
		Note: "the disk's fsyncs per second: a lone caller's bound with synchronous=FULL"})
	if err := b.hsetCeiling(ctx); err != nil {
		return err
	}
	rtt, err := redisRoundTrip(ctx, b.ropts, b.cfg.RTTOps)
	if err != nil {
		return fmt.Errorf("redis GET: %w", err)
	}
	b.rep.add(Row{Group: "ceiling", ID: "redis-rtt", What: "Redis sequential GET round trip, 1 conn", Value: rtt.rate(), Unit: "ops/s", P50: rtt.p(0.5), P99: rtt.p(0.99)})
	return b.httpCeilings(ctx)
}

// httpCeilings measures the trivial handlers the HTTP rows are compared
// with: a GET answered with JSON (the query rows) and a POST whose JSON body
// is decoded and answered with JSON (the command rows), at 1 and 64 clients.
// Each row's note gives the CPU time this process spent per request, client
// and server together.
func (b *bench) httpCeilings(ctx context.Context) error {
	for _, post := range []bool{false, true} {
		for _, clients := range []int{1, 64} {
			id, what, loop := "http-", "trivial net/http JSON handler", httpCeiling
			if post {
				id, what, loop = "http-post-", "trivial net/http JSON POST handler (decodes a cart item)", httpPostCeiling
			}
			cpu := cputime.Process()
			res := loop(ctx, clients, b.cfg.HTTPDuration)
			b.rep.add(Row{Group: "ceiling", ID: id + strconv.Itoa(clients), What: fmt.Sprintf("%s, %d %s", what, clients, plural(clients, "client")),
				Value: res.rate(), Unit: "req/s", P50: res.p(0.5), P99: res.p(0.99), Note: joinNotes(cpuPerOp(cputime.Process()-cpu, res.ops), res.errNote())})
		}
	}
	return nil
}

// cpuPerOp says how much CPU time of this process each of ops operations
// took, "" when there were none.
func cpuPerOp(cpu time.Duration, ops int) string {
	if ops == 0 {
		return ""
	}
	return fmt.Sprintf("%.0f µs CPU per op", float64(cpu)/float64(ops)/float64(time.Microsecond))
}

// wantsHTTP reports whether a phase compared with an HTTP ceiling runs.
func (b *bench) wantsHTTP() bool {
	return b.wants(phaseHTTP1) || b.wants(phaseHTTP64) || b.wants(phaseQuery)
}

func (b *bench) hsetCeiling(ctx context.Context) error {
	hset, err := redisHSET(ctx, b.ropts, b.cfg.HSETOps)
	if err != nil {
		return fmt.Errorf("redis HSET: %w", err)
	}
	b.rep.add(Row{Group: "ceiling", ID: "redis-hset", What: "go-redis pipelined HSET, pipelines of 500, 1 conn", Value: hset, Unit: "ops/s"})
	return nil
}

// openStore opens a store in the run's directory with the default Sync mode
// (synchronous=FULL), unless sync says otherwise.
func (b *bench) openStore(ctx context.Context, name string, sync ...sqlite.SyncMode) (*sqlite.Store, error) {
	cfg := sqlite.Config{Path: filepath.Join(b.dir, name), Logger: b.log}
	if len(sync) > 0 {
		cfg.Sync = sync[0]
	}
	return sqlite.Open(ctx, cfg)
}

func (b *bench) appends(ctx context.Context) error {
	store, err := b.openStore(ctx, "appends.db")
	if err != nil {
		return err
	}
	defer store.Close()
	total := 0
	for _, w := range []struct {
		writers, n int
		ceiling    string
	}{{1, b.cfg.Appends1, "fsync"}, {64, b.cfg.Appends64, "sqlite-tx100-full"}} {
		res := storeAppends(ctx, store, "w"+strconv.Itoa(w.writers), w.writers, w.n)
		total += res.ops - res.errors
		head, err := store.Head(ctx)
		if err != nil {
			return err
		}
		b.rep.add(Row{Group: "write", ID: "append-" + strconv.Itoa(w.writers),
			What:  fmt.Sprintf("store appends, %d %s, 1 event each, exact version, FULL", w.writers, plural(w.writers, "writer")),
			Value: float64(res.ops) / res.elapsed.Seconds(), Unit: "events/s", P50: res.p(0.5), P99: res.p(0.99),
			Ceiling: w.ceiling, Correct: yesNo(res.errors == 0 && res.ops == w.n && head == eventstore.SeqPosition(uint64(total))),
			Note: res.errNote()})
	}
	return nil
}

// sample runs everything that uses the sample application: the cart
// workload through HTTP and through the library, the catch-up of the sample's
// read models over the events it wrote, their correctness, and the query API.
func (b *bench) sample(ctx context.Context) error {
	store, err := b.openStore(ctx, "carts.db")
	if err != nil {
		return err
	}
	defer store.Close()
	api, err := commandapi.New(store, b.reg, commandapi.Config{Logger: b.log})
	if err != nil {
		return err
	}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	h, err := command.NewHandler(store, b.reg, cart.Decider, command.Config{Name: "cart", Logger: b.log})
	if err != nil {
		return err
	}

	// The library rows run twice, on the default synchronous=FULL store and on
	// a store of their own with synchronous=NORMAL, one after the other so
	// that both see the same machine; the NORMAL carts are not projected.
	normal, err := b.openStore(ctx, "carts-normal.db", sqlite.SyncNormal)
	if err != nil {
		return err
	}
	defer normal.Close()
	hNormal, err := command.NewHandler(normal, b.reg, cart.Decider, command.Config{Name: "cart", Logger: b.log})
	if err != nil {
		return err
	}

	var runs []*cartRun
	var events, eventsNormal uint64
	for _, w := range []struct {
		phase, id, ceiling, what string
		callers                  int
		http, normal             bool
	}{
		{phaseHTTP1, "cmd-http-1", "http-post-1", "cart workload via command HTTP API, 1 client, FULL", 1, true, false},
		{phaseHTTP64, "cmd-http-64", "http-post-64", "cart workload via command HTTP API, 64 clients, FULL", 64, true, false},
		{phaseLib1, "cmd-lib-1", "fsync", "cart workload via command.Handler, 1 caller, FULL (default)", 1, false, false},
		{phaseLib1Normal, "cmd-lib-1-normal", "sqlite-tx100", "cart workload via command.Handler, 1 caller, NORMAL", 1, false, true},
		{phaseLib64, "cmd-lib-64", "sqlite-tx100-full", "cart workload via command.Handler, 64 callers, FULL (default)", 64, false, false},
		{phaseLib64Normal, "cmd-lib-64-normal", "sqlite-tx100", "cart workload via command.Handler, 64 callers, NORMAL", 64, false, true},
	} {
		if !b.wantsWorkload(w.phase) {
			continue
		}
		carts := b.cfg.Carts
		if w.callers == 1 {
			carts = min(b.cfg.Carts1, b.cfg.Carts)
		}
		r := newCartRun(strings.TrimPrefix(w.id, "cmd-"), carts)
		st, handler, written := store, h, &events
		if w.normal {
			st, handler, written = normal, hNormal, &eventsNormal
		} else {
			runs = append(runs, r)
		}
		err := b.phase(ctx, w.phase, func(ctx context.Context) error {
			var res loopResult
			cpu := cputime.Process()
			if w.http {
				c := newHTTPClient(w.callers)
				res = r.drive(ctx, w.callers, r.viaHTTP(c, srv.URL))
				c.CloseIdleConnections()
			} else {
				res = r.drive(ctx, w.callers, r.viaHandler(handler))
			}
			*written += uint64(r.accepted() * cartCommands)
			head, err := st.Head(ctx)
			if err != nil {
				return err
			}
			note := fmt.Sprintf("%s carts × 7 commands; %s", thousands(int64(r.carts)), cpuPerOp(cputime.Process()-cpu, res.ops))
			if full := b.rep.row(strings.TrimSuffix(w.id, "-normal")); w.normal && full != nil && res.rate() > 0 {
				full.Note = joinNotes(full.Note, fmt.Sprintf("%.2f of NORMAL", full.Value/res.rate()))
			}
			b.rep.add(Row{Group: "write", ID: w.id, What: w.what, Value: res.rate(), Unit: "cmds/s",
				P50: res.p(0.5), P99: res.p(0.99), Ceiling: w.ceiling,
				Correct: yesNo(res.errors == 0 && r.accepted() == r.carts && head == eventstore.SeqPosition(*written)),
				Note:    joinNotes(note, res.errNote())})
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := normal.Close(); err != nil {
		return err
	}

	head, err := store.Head(ctx)
	if err != nil {
		return err
	}
	var cfgs []projection.Config
	var names []string
	// One reading of the log shared by the four runners, as in the sample's
	// serve and projector roles.
	shared := eventstore.NewSharedLog(store, eventstore.SharedLogOptions{})
	for _, p := range readmodel.Projections(b.reg) {
		cfgs = append(cfgs, projection.Config{Store: shared, Redis: b.rdb, Projection: p, Logger: b.log})
		names = append(names, p.Name())
	}
	var rs *runners
	defer func() {
		if rs != nil {
			_ = rs.stop()
		}
	}()
	if !b.wants(phaseCatchUp) && !b.wants(phaseQuery) && !b.wants(phaseRebuildSample) {
		return nil
	}
	// The query phase and the rebuilds read the models the catch-up built.
	err = b.phase(ctx, phaseCatchUp, func(ctx context.Context) error {
		start := time.Now()
		if rs, err = startRunners(ctx, cfgs); err != nil {
			return err
		}
		end, err := waitCheckpoints(ctx, b.rdb, rs, names, head, 30*time.Minute)
		if err != nil {
			return err
		}
		rate := float64(head.Commit) / end.Sub(start).Seconds()
		ok, bad, err := checkCarts(ctx, b.rdb, runs)
		if err != nil {
			return err
		}
		note := fmt.Sprintf("%s events, %d models at once sharing one reading of the log (%s events/s applied in all); every cart's total and items checked",
			thousands(int64(head.Commit)), len(cfgs), num(rate*float64(len(cfgs))))
		if !ok {
			note = joinNotes(note, bad)
		}
		b.rep.add(Row{Group: "read", ID: "catchup-sample", What: "catch-up of the sample's read models (carts, customers, products, orders)",
			Value: rate, Unit: "events/s", Ceiling: "redis-hset", Correct: yesNo(ok), Note: note})
		return nil
	})
	if err != nil {
		return err
	}
	if b.wants(phaseQuery) {
		if err := b.phase(ctx, phaseQuery, func(ctx context.Context) error { return b.queries(ctx, runs) }); err != nil {
			return err
		}
	}
	// The runners of v1 stop here: a rebuild to v2 would supersede them.
	err, rs = rs.stop(), nil
	if err != nil {
		return err
	}
	if !b.wants(phaseRebuildSample) {
		return nil
	}
	return b.phase(ctx, phaseRebuildSample, func(ctx context.Context) error { return b.rebuildSample(ctx, store, head, runs) })
}

// nextVersion is a projection with its version bumped: the same model built
// again beside the live one, as a deployment with a changed Apply would.
type nextVersion struct{ projection.Projection }

func (p nextVersion) Version() int { return p.Projection.Version() + 1 }

// Unwrap lets the runner decode ahead for the wrapped model, as it does for
// v1 (projection.Wrapper).
func (p nextVersion) Unwrap() projection.Projection { return p.Projection }

// rebuildSample rebuilds each of the sample's read models alone, blue/green
// from v1 to v2, over the SQLite log the cart workload wrote: the catch-up
// rate of each model on its own, from a real store.
func (b *bench) rebuildSample(ctx context.Context, store eventstore.Store, head eventstore.Position, runs []*cartRun) error {
	for _, p := range readmodel.Projections(b.reg) {
		start := time.Now()
		var switched time.Time
		res, err := projection.Rebuild(ctx, projection.Config{Store: store, Redis: b.rdb, Projection: nextVersion{p},
			Logger: b.log, RetireDelay: time.Millisecond},
			projection.RebuildOptions{ProgressEvery: 5 * time.Millisecond, Progress: func(pr projection.Progress) {
				if switched.IsZero() && (pr.Phase == projection.PhaseRemovingOld || pr.Phase == projection.PhaseDone) {
					switched = time.Now()
				}
			}})
		if err != nil {
			return fmt.Errorf("rebuild %s: %w", p.Name(), err)
		}
		if switched.IsZero() {
			switched = time.Now()
		}
		ok := res.Previous == p.Version() && res.Version == p.Version()+1 && !res.Checkpoint.Before(head)
		note := thousands(int64(head.Commit)) + " events"
		if p.Name() == schema.Carts && ok {
			good, bad, err := checkCarts(ctx, b.rdb, runs)
			if err != nil {
				return err
			}
			ok = good
			note = joinNotes(note, "every cart checked again in v2", bad)
		}
		b.rep.add(Row{Group: "rebuild", ID: "rebuild-" + p.Name(),
			What:  fmt.Sprintf("blue/green rebuild of the sample's %s model alone, SQLite log", p.Name()),
			Value: float64(head.Commit) / switched.Sub(start).Seconds(), Unit: "events/s", Ceiling: "redis-hset",
			Correct: yesNo(ok), Note: note})
	}
	return nil
}

// checkCarts reads every cart of runs from the carts read model and compares
// it with what its accepted commands imply: checked out, five lines, the
// total. It returns false and the first difference when one differs.
func checkCarts(ctx context.Context, rdb redis.Cmdable, runs []*cartRun) (bool, string, error) {
	v, err := query.Resolve(ctx, rdb, schema.Carts)
	if err != nil {
		return false, "", err
	}
	type job struct {
		r *cartRun
		i int
	}
	jobs := make(chan job)
	var mu sync.Mutex
	var bad []string
	var firstErr error
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for j := range jobs {
				c, _, err := schema.ReadCart(ctx, rdb, v, j.r.id(j.i))
				mu.Lock()
				switch {
				case err != nil && !errors.Is(err, query.ErrNotFound):
					firstErr = cmpOr(firstErr, err)
				case err != nil:
					bad = append(bad, j.r.id(j.i)+" missing")
				case c.Status != schema.CartCheckedOut || len(c.Items) != 5 || c.TotalCents != cartTotal(j.i) || c.CustomerID != customerOf(j.i):
					bad = append(bad, fmt.Sprintf("%s: %s, %d lines, total %d (want checked_out, 5, %d)",
						j.r.id(j.i), c.Status, len(c.Items), c.TotalCents, cartTotal(j.i)))
				}
				mu.Unlock()
			}
		})
	}
	for _, r := range runs {
		for i := range r.carts {
			if r.done[i].Load() {
				jobs <- job{r, i}
			}
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return false, "", firstErr
	}
	if len(bad) > 0 {
		return false, fmt.Sprintf("%d carts differ, e.g. %s", len(bad), bad[0]), nil
	}
	return true, "", nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func (b *bench) queries(ctx context.Context, runs []*cartRun) error {
	mux := http.NewServeMux()
	api := queryapi.New(b.rdb, queryapi.Config{Logger: b.log})
	defer api.Close()
	api.Mount(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	var targets []cartTarget
	for _, r := range runs {
		for i := range r.carts {
			if r.done[i].Load() {
				targets = append(targets, cartTarget{r.id(i), r.position[i].String()})
			}
		}
	}
	if len(targets) == 0 {
		return errors.New("no cart to query")
	}
	const clients = 64
	for _, q := range []struct {
		id, what string
		after    bool
	}{
		{"query", "query API GET /carts/{id}, 64 clients", false},
		{"query-after", "query API GET /carts/{id}?after=<its position>, 64 clients", true},
	} {
		c := newHTTPClient(clients)
		// Correctness is checked apart from the timed loop, which on a
		// loaded machine may complete no request at all: a sample of the
		// carts, each read once and required to answer for its own id.
		checkErr := verifyCarts(ctx, c, srv.URL, targets, q.after)
		rngs := make([]*rand.Rand, clients)
		for i := range rngs {
			rngs[i] = rand.New(rand.NewPCG(uint64(i), 11))
		}
		cpu := cputime.Process()
		res := closedLoop(ctx, clients, b.cfg.HTTPDuration, func(ctx context.Context, client, _ int) error {
			t := targets[rngs[client].IntN(len(targets))]
			url := srv.URL + "/carts/" + t.id
			if q.after {
				url += "?after=" + t.after
			}
			_, err := do(ctx, c, http.MethodGet, url, "", http.StatusOK)
			return err
		})
		c.CloseIdleConnections()
		note := joinNotes(cpuPerOp(cputime.Process()-cpu, res.ops), res.errNote())
		if checkErr != nil {
			note = joinNotes(note, checkErr.Error())
		}
		b.rep.add(Row{Group: "read", ID: q.id, What: q.what, Value: res.rate(), Unit: "req/s", P50: res.p(0.5), P99: res.p(0.99),
			Ceiling: "http-64", Correct: yesNo(res.errors == 0 && checkErr == nil), Note: note})
	}
	return nil
}

// cartTarget is a cart the queries read and the position that wrote it.
type cartTarget struct {
	id, after string
}

// verifiedCarts is how many carts verifyCarts reads, spread over the list.
const verifiedCarts = 256

// verifyCarts reads up to verifiedCarts of targets (with ?after= their
// position when after is set) and returns the first answer that is not the
// cart asked for.
func verifyCarts(ctx context.Context, c *http.Client, base string, targets []cartTarget, after bool) error {
	step := max(1, len(targets)/verifiedCarts)
	for i := 0; i < len(targets); i += step {
		t := targets[i]
		url := base + "/carts/" + t.id
		if after {
			url += "?after=" + t.after
		}
		body, err := do(ctx, c, http.MethodGet, url, "", http.StatusOK)
		if err != nil {
			return err
		}
		if !strings.Contains(string(body), `"cart_id":"`+t.id+`"`) {
			return fmt.Errorf("GET %s: not cart %s: %s", url, t.id, body)
		}
	}
	return nil
}

func (b *bench) syntheticCatchUp(ctx context.Context) error {
	store := &genStore{n: uint64(b.cfg.SyntheticEvents), t0: time.Now()}
	const name = "synthetic"
	start := time.Now()
	rs, err := startRunners(ctx, []projection.Config{{Store: store, Redis: b.rdb, Projection: versionProjection(name, 1), Logger: b.log}})
	if err != nil {
		return err
	}
	defer rs.stop()
	end, err := waitCheckpoints(ctx, b.rdb, rs, []string{name}, eventstore.SeqPosition(store.n), 30*time.Minute)
	if err != nil {
		return err
	}
	ok, err := checkVersions(ctx, b.rdb, name, 1, store.lastVersions())
	if err != nil {
		return err
	}
	b.rep.add(Row{Group: "read", ID: "catchup-synthetic", What: "catch-up, synthetic log, 1 projection (HSET per event)",
		Value: float64(store.n) / end.Sub(start).Seconds(), Unit: "events/s", Ceiling: "redis-hset", Correct: yesNo(ok),
		Note: fmt.Sprintf("%s events generated in process: measures the runner, not a store", thousands(int64(store.n)))})
	return nil
}

func (b *bench) lag(ctx context.Context) error {
	store, err := b.openStore(ctx, "lag.db")
	if err != nil {
		return err
	}
	defer store.Close()
	for _, rate := range b.cfg.LagRates {
		res := liveLag(ctx, store, b.rdb, "lag"+strconv.Itoa(rate), rate, b.cfg.LagDuration, b.log)
		if res.err != nil {
			return fmt.Errorf("at %d events/s: %w", rate, res.err)
		}
		b.rep.add(Row{Group: "read", ID: "lag-" + strconv.Itoa(rate),
			What:  fmt.Sprintf("live lag, append issued → visible in Redis, steady %s events/s", num(float64(rate))),
			Value: res.achieve, Unit: "events/s", P50: percentile(res.lat, 0.5), P99: percentile(res.lat, 0.99),
			Correct: "yes", Note: fmt.Sprintf("%s events on SQLite; p50/p99 are the lag", thousands(int64(res.events)))})
	}
	return nil
}

func (b *bench) rebuild(ctx context.Context) error {
	if b.cfg.RebuildEvents == 0 {
		return nil
	}
	store := &genStore{n: uint64(b.cfg.RebuildEvents), t0: time.Now()}
	const name = "rebuild"
	// A live v1 at the head, as its runner left it: the model, the
	// checkpoint, active = 1.
	head := eventstore.SeqPosition(store.n)
	pipe := b.rdb.Pipeline()
	for i := range genStreams {
		pipe.HSet(ctx, query.Key(name, query.Version(1), "s", "s-"+strconv.Itoa(i)), "v", 0)
	}
	pipe.HSet(ctx, query.CheckpointKey(name, query.Version(1)), query.FieldPosition, head.String(),
		query.FieldCommit, head.Commit, query.FieldPrepare, head.Prepare)
	pipe.Set(ctx, query.ActiveKey(name), 1, 0)
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	runtime.GC()
	debug.FreeOSMemory()
	before := float64(procStatusKB("VmRSS:")) / 1024
	peak := startPeakRSS()
	start := time.Now()
	var switched time.Time
	res, err := projection.Rebuild(ctx, projection.Config{Store: store, Redis: b.rdb, Projection: versionProjection(name, 2),
		Logger: b.log, RetireDelay: time.Millisecond},
		projection.RebuildOptions{ProgressEvery: 5 * time.Millisecond, Progress: func(p projection.Progress) {
			if switched.IsZero() && (p.Phase == projection.PhaseRemovingOld || p.Phase == projection.PhaseDone) {
				switched = time.Now()
			}
		}})
	end := time.Now()
	rss, how := peak.end()
	if err != nil {
		return err
	}
	if switched.IsZero() {
		switched = end
	}
	ok, err := checkVersions(ctx, b.rdb, name, 2, store.lastVersions())
	if err != nil {
		return err
	}
	active, err := b.rdb.Get(ctx, query.ActiveKey(name)).Int()
	if err != nil {
		return err
	}
	old, err := b.rdb.Exists(ctx, query.Key(name, query.Version(1), "s", "s-0"), query.CheckpointKey(name, query.Version(1))).Result()
	if err != nil {
		return err
	}
	ok = ok && res.Previous == 1 && res.Checkpoint == head && active == 2 && old == 0
	b.rep.add(Row{Group: "rebuild", ID: "rebuild", What: "blue/green projection.Rebuild v1 → v2, synthetic log",
		Value: float64(store.n) / switched.Sub(start).Seconds(), Unit: "events/s", Ceiling: "redis-hset", Correct: yesNo(ok),
		Note: fmt.Sprintf("%s events; peak RSS %.0f MiB (%s; %.0f MiB before); switch → old keys gone %s",
			thousands(int64(store.n)), rss, how, before, end.Sub(switched).Round(time.Millisecond))})
	return nil
}

func joinNotes(notes ...string) string {
	var out []string
	for _, n := range notes {
		if n != "" {
			out = append(out, n)
		}
	}
	return strings.Join(out, "; ")
}

// loadAvg returns the 1, 5 and 15 minute load averages, or "?".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func redisVersion(ctx context.Context, opts *redis.Options) (string, error) {
	c := oneConn(opts)
	defer c.Close()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return "redis " + v, nil
		}
	}
	return "", errors.New("no redis_version")
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// procCPU returns the user and system CPU time of process pid from
// /proc/<pid>/stat, -1 when it cannot be read. The kernel counts in clock
// ticks, 100 per second on Linux.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	// The command name (field 2) may hold spaces; fields after it are plain.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return -1
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return time.Duration(utime+stime) * (time.Second / 100)
}

package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/projection/cli"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
)

// counter counts records per stream, times its version.
func counter(name string, version int) projection.Projection {
	return projection.Define(name, version, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record) error {
		tx.Pipe().HIncrBy(ctx, tx.Key("counts"), rec.StreamID, int64(version))
		return nil
	})
}

// shared keeps a test's store open when a command closes it.
type shared struct{ eventstore.Store }

func (shared) Close() error { return nil }

type env struct {
	store *memory.Store
	srv   *redistest.Server
	rdb   *redis.Client
}

func newEnv(t *testing.T, events int) *env {
	t.Helper()
	e := &env{store: memory.New(), srv: redistest.Start(t)}
	e.rdb = e.srv.Client(t)
	ctx := context.Background()
	for i := 0; i < events; i += 100 {
		evs := make([]eventstore.Event, 100)
		for j := range evs {
			evs[j] = eventstore.Event{Type: "t"}
		}
		if _, err := e.store.Append(ctx, "s-"+string(rune('a'+i%7)), eventstore.Any, evs...); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *env) config(ps ...projection.Projection) cli.Config {
	return cli.Config{
		Projections: ps,
		OpenStore:   func(context.Context) (eventstore.Store, error) { return shared{e.store}, nil },
		OpenRedis: func(context.Context) (redis.UniversalClient, error) {
			return redis.NewClient(&redis.Options{Addr: e.srv.Addr}), nil
		},
		Runner: projection.Config{RetireDelay: time.Millisecond, LeaseTTL: time.Second},
	}
}

// run executes the commands in-process like an application's main would.
func run(ctx context.Context, cfg cli.Config, args ...string) (stdout, stderr string, err error) {
	root := &cobra.Command{Use: "app", SilenceErrors: true}
	root.AddCommand(cli.Commands(cfg)...)
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err = root.ExecuteContext(ctx)
	return out.String(), errb.String(), err
}

// startProjector runs a long-running runner of p (ID id, LeaseTTL ttl; zero
// values: the defaults) until the test ends, and waits up to within until it
// has applied the whole log.
func (e *env) startProjector(t *testing.T, p projection.Projection, id string, ttl, within time.Duration) *projectorRun {
	t.Helper()
	r, err := projection.NewRunner(projection.Config{Store: e.store, Redis: e.rdb, Projection: p, ID: id,
		Logger: slog.New(slog.DiscardHandler), LeaseTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	run := &projectorRun{id: r.ID(), done: make(chan struct{})}
	go func() { defer close(run.done); run.err = r.Run(ctx) }()
	t.Cleanup(func() { stop(); <-run.done })
	head, err := e.store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		_, err := query.WaitFor(wctx, e.rdb, p.Name(), head)
		if err == nil {
			return run
		}
		if !errors.Is(err, query.ErrNotReady) {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // polling for the first activation, not synchronising
	}
}

// projectorRun is a runner started by startProjector.
type projectorRun struct {
	id   string
	done chan struct{}
	err  error
}

// ID is the runner's ID.
func (r *projectorRun) ID() string { return r.id }

// stopped reports whether the runner's Run returned, and its error.
func (r *projectorRun) stopped() (bool, error) {
	select {
	case <-r.done:
		return true, r.err
	default:
		return false, nil
	}
}

// buildV1 runs a v1 runner until the projection is active at the head, as a
// projector deployed earlier would have.
func (e *env) buildV1(t *testing.T, name string) {
	t.Helper()
	r, err := projection.NewRunner(projection.Config{Store: e.store, Redis: e.rdb, Projection: counter(name, 1),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	head, _ := e.store.Head(ctx)
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	for {
		v, err := query.WaitFor(wctx, e.rdb, name, head)
		if err == nil && v.Version == 1 {
			break
		}
		if wctx.Err() != nil {
			t.Fatalf("v1 of %s not built: %v", name, err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestReplaySwitchesAndPrintsPlainLines(t *testing.T) {
	e := newEnv(t, 20_000)
	ctx := context.Background()
	e.buildV1(t, "carts")
	e.buildV1(t, "orders")
	cfg := e.config(counter("carts", 2), counter("orders", 1))

	out, _, err := run(ctx, cfg, "replay", "--all", "--interval", "1ms")
	if err != nil {
		t.Fatalf("replay --all: %v\n%s", err, out)
	}
	t.Logf("output:\n%s", out)
	for _, want := range []string{"carts v2: catching_up ", "events/s", "ETA", "carts: v2 active at 20000, replaced v1 (removed)", "carts v2: 20000 events in ",
		"orders: v1 is already active; nothing to rebuild"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "\r") || strings.Contains(out, "\x1b[") {
		t.Error("terminal control characters in non-terminal output")
	}
	v, err := query.Resolve(ctx, e.rdb, "carts")
	if err != nil || v.Version != 2 {
		t.Fatalf("carts active: %v, %v", v, err)
	}
	if n := len(e.rdb.Keys(ctx, query.Prefix("carts", query.Version(1))+"*").Val()); n != 0 {
		t.Fatalf("%d keys of carts v1 left", n)
	}
	var total int64
	for _, c := range e.rdb.HGetAll(ctx, v.Key("counts")).Val() {
		var n int64
		if err := json.Unmarshal([]byte(c), &n); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if total != 2*20_000 {
		t.Fatalf("carts v2 counts sum to %d, want %d", total, 2*20_000)
	}

	// status --json parses and agrees.
	js, _, err := run(ctx, cfg, "status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []projection.Status
	if err := json.Unmarshal([]byte(js), &rows); err != nil {
		t.Fatalf("status --json: %v\n%s", err, js)
	}
	got := map[string]projection.Status{}
	for _, s := range rows {
		got[s.Name+"/"+string(rune('0'+s.Version))] = s
	}
	c2, ok := got["carts/2"]
	if !ok || !c2.Active || c2.ActiveVersion != 2 || c2.Checkpoint != eventstore.SeqPosition(20_000) ||
		c2.Head != eventstore.SeqPosition(20_000) || c2.LagEvents != 0 {
		t.Errorf("carts v2 status %+v (rows %v)", c2, rows)
	}
	if _, ok := got["carts/1"]; ok {
		t.Errorf("removed carts v1 still listed: %+v", got["carts/1"])
	}
	if o := got["orders/1"]; !o.Active || o.Checkpoint != eventstore.SeqPosition(20_000) {
		t.Errorf("orders v1 status %+v", o)
	}

	table, _, err := run(ctx, cfg, "status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(table, "PROJECTION") || !strings.Contains(table, "carts") || !strings.Contains(table, "orders") {
		t.Errorf("status table:\n%s", table)
	}
}

func TestReplayErrors(t *testing.T) {
	e := newEnv(t, 100)
	ctx := context.Background()
	cfg := e.config(counter("carts", 1))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"replay", "nope"}, `unknown projection ["nope"] (known: [carts])`},
		{[]string{"replay"}, "name the projections to replay, or use --all"},
		{[]string{"replay", "--all", "carts"}, "not both"},
		{[]string{"replay", "--progress", "fancy", "carts"}, "--progress"},
		{[]string{"status", "extra"}, "unknown command"},
	} {
		_, _, err := run(ctx, cfg, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want it to contain %q", tc.args, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error is not one line: %q", tc.args, err)
		}
	}

	down := cfg
	down.ConnectTimeout = 500 * time.Millisecond
	down.OpenRedis = func(context.Context) (redis.UniversalClient, error) {
		return redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1}), nil
	}
	for _, args := range [][]string{{"replay", "--all"}, {"status"}} {
		if _, _, err := run(ctx, down, args...); err == nil || !strings.HasPrefix(err.Error(), "redis unreachable") {
			t.Errorf("%v with Redis down: %v", args, err)
		}
	}
	noStore := cfg
	noStore.OpenStore = func(context.Context) (eventstore.Store, error) { return nil, errors.New("no such file") }
	if _, _, err := run(ctx, noStore, "replay", "carts"); err == nil || !strings.HasPrefix(err.Error(), "event store unreachable: no such file") {
		t.Errorf("replay with the store down: %v", err)
	}
	_, warn, err := run(ctx, noStore, "status")
	if err != nil || !strings.Contains(warn, "warning: event store unreachable") {
		t.Errorf("status with the store down: %v, stderr %q", err, warn)
	}
}

// TestReplayCancel cancels the command's context (what Ctrl-C does through
// signal.NotifyContext) during a replay: the command fails with a clear
// message, the live version is untouched and the partial one removed.
func TestReplayCancel(t *testing.T) {
	// 400 batches of 50: the replay is still running when the cancel lands,
	// on any machine; a longer log only makes building v1 slower.
	e := newEnv(t, 20_000)
	e.buildV1(t, "carts")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := e.config(counter("carts", 2))
	cfg.Runner.BatchSize = 50
	// Cancel as soon as the new version has written something.
	go func() {
		for ctx.Err() == nil {
			if cp, _ := query.ReadCheckpoint(context.Background(), e.rdb, "carts", query.Version(2)); cp.Commit > 0 {
				cancel()
				return
			}
			time.Sleep(time.Millisecond) // polling Redis, not synchronising
		}
	}()
	_, _, err := run(ctx, cfg, "replay", "carts")
	if err == nil || !strings.HasPrefix(err.Error(), "replay cancelled: ") || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled replay: %v", err)
	}
	t.Log(err)
	bg := context.Background()
	if v, err := query.Resolve(bg, e.rdb, "carts"); err != nil || v.Version != 1 {
		t.Fatalf("active after cancel: %v, %v", v, err)
	}
	if n := len(e.rdb.Keys(bg, query.Prefix("carts", query.Version(2))+"*").Val()); n != 0 {
		t.Fatalf("%d keys of the cancelled v2 left", n)
	}
}

// TestReplayForceRestoresDamagedModel damages a live model by hand (a field
// deleted, another overwritten) while its projector runs. Plain replay leaves
// the active version alone and says how to rebuild it; replay --force
// rebuilds it as generation 1, blue/green, restoring the exact model; the
// projector follows generation 1 and keeps applying new events; status shows
// the generation.
func TestReplayForceRestoresDamagedModel(t *testing.T) {
	const events = 20_000
	e := newEnv(t, events)
	ctx := context.Background()
	e.buildV1(t, "orders")

	// The long-running projector of carts v1.
	projector := e.startProjector(t, counter("carts", 1), "", time.Second, 30*time.Second)

	want := map[string]string{}
	for i := 0; i < events; i += 100 {
		s := "s-" + string(rune('a'+i%7))
		n, _ := strconv.Atoi(want[s])
		want[s] = strconv.Itoa(n + 100)
	}
	counts := func(v *query.View) map[string]string { return e.rdb.HGetAll(ctx, v.Key("counts")).Val() }
	v, _ := query.Resolve(ctx, e.rdb, "carts")
	if !maps.Equal(counts(v), want) {
		t.Fatalf("carts v1 before the damage: %v, want %v", counts(v), want)
	}
	e.rdb.HDel(ctx, v.Key("counts"), "s-a")
	e.rdb.HSet(ctx, v.Key("counts"), "s-b", 7)

	cfg := e.config(counter("carts", 1), counter("orders", 1))
	out, _, err := run(ctx, cfg, "replay", "carts")
	if err != nil || !strings.Contains(out, "carts: v1 is already active; nothing to rebuild (replay --force carts rebuilds it as a new generation)") {
		t.Fatalf("replay without --force: %v\n%s", err, out)
	}
	if maps.Equal(counts(v), want) {
		t.Fatal("replay without --force changed the model")
	}

	out, _, err = run(ctx, cfg, "replay", "--force", "--all", "--interval", "1ms")
	if err != nil {
		t.Fatalf("replay --force --all: %v\n%s", err, out)
	}
	t.Logf("output:\n%s", out)
	for _, w := range []string{"carts v1 generation 1: catching_up ", "carts: v1 generation 1 active at 20000, replaced v1 (removed)",
		"orders: v1 generation 1 active at 20000, replaced v1 (removed)"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q", w)
		}
	}
	v, err = query.Resolve(ctx, e.rdb, "carts")
	if err != nil || v.Version != 1 || v.Generation != 1 {
		t.Fatalf("carts active after replay --force: %+v, %v", v, err)
	}
	if got := counts(v); !maps.Equal(got, want) {
		t.Fatalf("carts after replay --force: %v, want %v", got, want)
	}
	if n := len(e.rdb.Keys(ctx, query.Prefix("carts", query.Version(1))+"*").Val()); n != 0 {
		t.Errorf("%d keys of the damaged generation 0 left", n)
	}

	// The projector did not stop: it writes generation 1 from now on.
	if stopped, err := projector.stopped(); stopped {
		t.Fatalf("projector stopped: %v", err)
	}
	res, err := e.store.Append(ctx, "s-a", eventstore.Any, eventstore.Event{Type: "t"})
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if v, err = query.WaitFor(wctx, e.rdb, "carts", res.Position); err != nil || v.Generation != 1 {
		t.Fatalf("carts after an append: %+v, %v", v, err)
	}
	want["s-a"] = strconv.Itoa(mustAtoi(t, want["s-a"]) + 1)
	if got := counts(v); !maps.Equal(got, want) {
		t.Fatalf("carts after an append: %v, want %v", got, want)
	}

	js, _, err := run(ctx, cfg, "status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []projection.Status
	if err := json.Unmarshal([]byte(js), &rows); err != nil {
		t.Fatalf("status --json: %v\n%s", err, js)
	}
	var carts []projection.Status
	for _, s := range rows {
		if s.Name == "carts" {
			carts = append(carts, s)
		}
	}
	if len(carts) != 1 || carts[0].Generation != 1 || !carts[0].Active || carts[0].ActiveGeneration != 1 ||
		carts[0].Holder != projector.ID() || carts[0].State != projection.StateRunning {
		t.Errorf("carts status rows %+v", carts)
	}
	table, _, err := run(ctx, cfg, "status")
	if err != nil || !strings.Contains(table, "GEN") {
		t.Fatalf("status table: %v\n%s", err, table)
	}
	for _, line := range strings.Split(table, "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[0] == "carts" && (f[1] != "v1" || f[2] != "1" || f[3] != "*") {
			t.Errorf("carts row %q: want v1, generation 1, active", line)
		}
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestReplayRestartDiscardsACrashedBuild: a replay of v2 died part-way with
// code that was fixed since. `replay --restart` discards the partial build and
// builds v2 from the start of the log, so nothing the old code wrote remains.
func TestReplayRestartDiscardsACrashedBuild(t *testing.T) {
	e := newEnv(t, 5_000)
	ctx := context.Background()
	e.buildV1(t, "carts")
	buggy := projection.Define("carts", 2, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record) error {
		tx.Pipe().HIncrBy(ctx, tx.Key("counts"), rec.StreamID, 7)
		tx.Pipe().Set(ctx, tx.Key("stale"), "written by the old code", 0)
		return nil
	})
	r, err := projection.NewRunner(projection.Config{Store: e.store, Redis: e.rdb, Projection: buggy,
		Activation: projection.ActivateNever, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if cp, _ := query.ReadCheckpoint(ctx, e.rdb, "carts", query.Version(2)); cp.Commit > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the crashed build wrote nothing")
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	out, _, err := run(ctx, e.config(counter("carts", 2)), "replay", "--restart", "--progress", "none", "carts")
	if err != nil || !strings.Contains(out, "carts: v2 active at 5000, replaced v1 (removed)") {
		t.Fatalf("replay --restart: %v\n%s", err, out)
	}
	if n := e.rdb.Exists(ctx, query.Key("carts", query.Version(2), "stale")).Val(); n != 0 {
		t.Error("a key of the crashed build survived replay --restart")
	}
	counts := e.rdb.HGetAll(ctx, query.Key("carts", query.Version(2), "counts")).Val()
	total := 0
	for s, v := range counts {
		n, _ := strconv.Atoi(v)
		if n%2 != 0 {
			t.Errorf("stream %s counted %d: not v2's code", s, n)
		}
		total += n
	}
	if total != 2*5_000 {
		t.Errorf("v2 counts %d in all, want %d", total, 2*5_000)
	}
}

// TestConfigValidate: every refused Config matches cli.ErrInvalidConfig.
func TestConfigValidate(t *testing.T) {
	open := func(context.Context) (eventstore.Store, error) { return memory.New(), nil }
	openRedis := func(context.Context) (redis.UniversalClient, error) { return nil, errors.New("unused") }
	ok := cli.Config{OpenStore: open, OpenRedis: openRedis, Projections: []projection.Projection{counter("carts", 1)}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, c := range map[string]cli.Config{
		"no store":       {OpenRedis: openRedis, Projections: ok.Projections},
		"no redis":       {OpenStore: open, Projections: ok.Projections},
		"no projection":  {OpenStore: open, OpenRedis: openRedis},
		"bad projection": {OpenStore: open, OpenRedis: openRedis, Projections: []projection.Projection{counter("carts", 0)}},
		"twice":          {OpenStore: open, OpenRedis: openRedis, Projections: []projection.Projection{counter("carts", 1), counter("carts", 2)}},
	} {
		if err := c.Validate(); !errors.Is(err, cli.ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
}

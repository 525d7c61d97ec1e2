package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/sample/app"
)

// Stores the topology can run on.
const (
	StorePostgres = "postgres" // a fresh database, shared by the two command APIs
	StoreSQLite   = "sqlite"   // one file, shared by the processes on this machine
)

// Config is one chaos run.
type Config struct {
	// CartBinary is the cart executable whose roles are started.
	CartBinary string
	// Dir receives the processes' logs and the SQLite file. Empty: a new
	// temporary directory, removed after a run without violations.
	Dir string
	// Store is StorePostgres (default) or StoreSQLite.
	Store string
	// PostgresURL is the server on which a fresh database is created and
	// dropped afterwards. Default postgres://postgres@127.0.0.1:5432/postgres.
	PostgresURL string
	// Seed chooses the fault schedule and the workload. 0: from the clock
	// (the report prints it, so the run can be repeated).
	Seed uint64
	// Duration is how long the workload runs under faults. Default 60 s.
	Duration time.Duration
	// Workers is the number of concurrent clients. Default 6.
	Workers int
	// Gap is the mean pause between the end of one fault and the next.
	// Default 3 s.
	Gap time.Duration
	// RecoveryBound is how long after a fault the system may take to serve
	// read-your-writes again. Default 30 s.
	RecoveryBound time.Duration
	// SettleBound is how long after the workload every order may take to
	// reach a final state and every read model the head. Default 90 s
	// plus half of Duration: the saga handles orders one at a time, and on
	// a loaded machine a long run leaves it a backlog.
	SettleBound time.Duration
	// Out receives progress and the report. nil: os.Stdout.
	Out io.Writer

	// Netns is "auto" (default: namespaces when root on Linux with ip and
	// iptables), "on" or "off". With namespaces every role process runs in
	// a network namespace of its own, and partitions and black holes are
	// packets the kernel refuses or drops; latency and loss stay the
	// proxies' (the kernels tried lacked tc netem).
	Netns string
	netns bool

	// afterVerify, when set (by tests), runs after the checks, with the
	// topology still up and the checker's fold.
	afterVerify func(ctx context.Context, t *topology, w *world)
}

// Validate checks the settings.
func (c Config) Validate() error {
	switch {
	case c.CartBinary == "":
		return errors.New("chaos: no cart binary")
	case c.Store != "" && c.Store != StorePostgres && c.Store != StoreSQLite:
		return fmt.Errorf("chaos: store %q: want %s or %s", c.Store, StorePostgres, StoreSQLite)
	case c.Netns != "" && c.Netns != "auto" && c.Netns != "on" && c.Netns != "off":
		return fmt.Errorf("chaos: netns %q: want auto, on or off", c.Netns)
	case c.Netns == "on" && !canNetns():
		return errors.New("chaos: netns on needs root on Linux with ip and iptables")
	case c.Duration < 0 || c.Gap < 0 || c.RecoveryBound < 0 || c.SettleBound < 0 || c.Workers < 0:
		return errors.New("chaos: durations and workers must not be negative")
	}
	return nil
}

func (c *Config) defaults() {
	if c.Store == "" {
		c.Store = StorePostgres
	}
	if c.PostgresURL == "" {
		c.PostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	if c.Duration == 0 {
		c.Duration = time.Minute
	}
	if c.Workers == 0 {
		c.Workers = 6
	}
	if c.Gap == 0 {
		c.Gap = 3 * time.Second
	}
	if c.RecoveryBound == 0 {
		c.RecoveryBound = 30 * time.Second
	}
	if c.SettleBound == 0 {
		c.SettleBound = 90*time.Second + c.Duration/2
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
	c.netns = c.Netns == "on" || ((c.Netns == "" || c.Netns == "auto") && canNetns())
}

// Run starts the topology, drives the workload while injecting the seed's
// faults, verifies the invariants and returns the report. An error means
// the run could not be carried out (a process did not start); violations of
// invariants are in the report (Report.Failed).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	tmp := cfg.Dir == ""
	if tmp {
		d, err := os.MkdirTemp("", "eventline-chaos-")
		if err != nil {
			return nil, err
		}
		cfg.Dir = d
	} else if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(cfg.Out, "chaos: "+format+"\n", args...)
	}
	rep := &Report{Seed: cfg.Seed, Store: cfg.Store, Duration: cfg.Duration, Dir: cfg.Dir,
		Network: "TCP fault proxies (no network namespaces: --netns off, or not root on Linux)"}
	if cfg.netns {
		rep.Network = "a network namespace per role; partitions and black holes by iptables, latency and loss by TCP fault proxies"
	}
	logf("seed %d, %s store, %s of workload, logs in %s", cfg.Seed, cfg.Store, cfg.Duration, cfg.Dir)
	logf("network faults: %s", rep.Network)
	t, err := startTopology(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer t.close()
	rep.Schedule = Schedule(cfg.Seed, cfg.Duration, cfg.Gap, t.roleNames(), t.linkNames())
	logf("fault schedule (seed %d):", cfg.Seed)
	for _, f := range rep.Schedule {
		fmt.Fprintf(cfg.Out, "  %s\n", f)
	}

	// The trace of landed batches, on a connection of the checker's own.
	trace := newCommitTrace()
	var traceMu sync.Mutex
	rdb := redis.NewClient(&redis.Options{Addr: t.redis.addr})
	defer rdb.Close()
	sub := rdb.PSubscribe(ctx, "{el:*}:commits")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		return nil, fmt.Errorf("chaos: subscribe to the commit announcements: %w", err)
	}
	traceDone := make(chan struct{})
	go func() {
		defer close(traceDone)
		for m := range sub.Channel(redis.WithChannelSize(10000)) {
			traceMu.Lock()
			trace.observe(m.Channel, m.Payload)
			traceMu.Unlock()
		}
	}()

	w := newWorkload(t.commands)
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	if err := w.register(ctx, rng); err != nil {
		return nil, err
	}
	wctx, stopWorkload := context.WithCancel(ctx)
	var workers sync.WaitGroup
	for i := range cfg.Workers {
		workers.Go(func() { w.run(wctx, i, cfg.Seed) })
	}
	begin := time.Now()
	logf("workload running with %d clients", cfg.Workers)
	for i, f := range rep.Schedule {
		if d := time.Until(begin.Add(f.At)); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil || time.Since(begin) > cfg.Duration*9/10 {
			break
		}
		in := injected{Fault: f, Start: time.Now()}
		if f.Kind == FaultRedisEmpty {
			traceMu.Lock()
			trace.reset()
			traceMu.Unlock()
		}
		err := t.inject(ctx, f)
		if f.Kind == FaultRedisEmpty {
			traceMu.Lock()
			trace.reset()
			traceMu.Unlock()
		}
		if err != nil {
			stopWorkload()
			workers.Wait()
			return nil, err
		}
		in.Healed = time.Now()
		d, rerr := t.awaitRecovery(ctx, w, rng, i, cfg.RecoveryBound)
		in.Recovered = d
		if rerr != nil {
			in.RecoveryErr = rerr.Error()
		}
		rep.Injected = append(rep.Injected, in)
		logf("%-11s %-22s at %5.1fs: recovered in %s %s", f.Kind, f.Target, in.Start.Sub(begin).Seconds(),
			d.Round(time.Millisecond), in.RecoveryErr)
	}
	if d := time.Until(begin.Add(cfg.Duration)); d > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	stopWorkload()
	if err := t.healAll(); err != nil {
		return nil, err
	}
	workers.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	rep.ops = w.recorded()
	logf("workload stopped after %s: %d commands; settling", time.Since(begin).Round(time.Second), len(rep.ops))

	if err := verify(ctx, t, cfg, rep); err != nil {
		return nil, err
	}
	_ = sub.Close()
	<-traceDone
	traceMu.Lock()
	rep.add("no batch landed without its lease (commit announcements strictly increase per build)", trace.seen, trace.violations)
	traceMu.Unlock()
	rep.summarize()
	if tmp && !rep.Failed() {
		t.close()
		_ = os.RemoveAll(cfg.Dir)
		rep.Dir = ""
	}
	return rep, nil
}

// verify waits for the system to settle and checks the invariants.
func verify(ctx context.Context, t *topology, cfg Config, rep *Report) error {
	store, err := app.OpenStore(ctx, t.storeURL, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	deadline := time.Now().Add(cfg.SettleBound)

	// Every order final, or the bound passed.
	var records []eventstore.Record
	var w *world
	for {
		records, err = readLog(ctx, store)
		if err != nil {
			return err
		}
		w = fold(records)
		pending := 0
		for _, o := range w.orders {
			if o.Status == "pending" {
				pending++
			}
		}
		if pending == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The saga is the only writer left; stopped, it leaves the log as it is
	// while the read models are compared with it.
	for _, p := range t.roles {
		if strings.HasPrefix(p.name, "saga-") {
			p.stop(app.ShutdownTimeout + 5*time.Second)
		}
	}
	if records, err = readLog(ctx, store); err != nil {
		return err
	}
	w = fold(records)
	rep.Events = len(records)
	rep.add("the checker's fold reads every record", len(records), w.problems)
	rep.add("every acknowledged command is in the log exactly once", len(rep.ops), checkExactlyOnce(records, rep.ops))
	rep.add("every order is final; its cart and credit agree", len(w.orders), checkOrders(w))

	checked, models := checkModels(ctx, t.queries, w, deadline)
	rep.add("every read model equals the checker's fold of the log, on every query API", checked, models)
	if cfg.afterVerify != nil {
		cfg.afterVerify(ctx, t, w)
	}
	rep.Carts, rep.Orders, rep.Customers = len(w.carts), len(w.orders), len(w.customers)
	for _, o := range w.orders {
		switch o.Status {
		case "confirmed":
			rep.Confirmed++
		case "rejected":
			rep.Rejected++
		}
	}
	var slow []string
	for _, in := range rep.Injected {
		if in.RecoveryErr != "" {
			slow = append(slow, fmt.Sprintf("%s %s: %s", in.Kind, in.Target, in.RecoveryErr))
		}
	}
	rep.add(fmt.Sprintf("read-your-writes again within %s after each fault", cfg.RecoveryBound), len(rep.Injected), slow)
	return nil
}

// checkModels waits (until deadline) for every query API to have applied
// the head of the fold, then compares every document they serve with the
// fold. It returns how many documents it compared and the differences.
func checkModels(ctx context.Context, queries []string, w *world, deadline time.Time) (int, []string) {
	client := &http.Client{Timeout: 10 * time.Second}
	head := w.head.String()
	var models []string
	for _, q := range queries {
		paths := []string{"/products/top?limit=100", "/customers/cust-0/carts"}
		if len(w.carts) > 0 {
			paths = append(paths, "/carts/"+anyKey(w.carts))
		}
		if len(w.orders) > 0 {
			paths = append(paths, "/orders/"+anyKey(w.orders))
		}
		for _, path := range paths {
			for {
				status, body := getJSON(ctx, client, q+path+sep(path)+"after="+head)
				if status == 200 {
					break
				}
				if time.Now().After(deadline) {
					models = append(models, fmt.Sprintf("%s%s?after=%s: %d %.200s after the settle bound", q, path, head, status, body))
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	}
	checked := 0
	var mu sync.Mutex
	var wg sync.WaitGroup
	jobs := make(chan func() []string)
	for range 8 {
		wg.Go(func() {
			for j := range jobs {
				v := j()
				mu.Lock()
				checked++
				models = append(models, v...)
				mu.Unlock()
			}
		})
	}
	get := func(q, path string, want any) func() []string {
		return func() []string {
			status, body := getJSON(ctx, client, q+path)
			if status != 200 {
				return []string{fmt.Sprintf("GET %s%s: %d %.200s", q, path, status, body)}
			}
			return compareJSON("GET "+q+path, body, want)
		}
	}
	for _, q := range queries {
		for _, id := range slices.Sorted(mapKeys(w.carts)) {
			jobs <- get(q, "/carts/"+id, w.carts[id])
		}
		for _, id := range slices.Sorted(mapKeys(w.orders)) {
			jobs <- get(q, "/orders/"+id, w.orders[id])
		}
		for _, id := range slices.Sorted(mapKeys(w.customers)) {
			jobs <- get(q, "/customers/"+id+"/carts", w.customers[id])
		}
		jobs <- func() []string {
			status, body := getJSON(ctx, client, q+"/products/top?limit=100")
			if status != 200 {
				return []string{fmt.Sprintf("GET %s/products/top: %d %.200s", q, status, body)}
			}
			return compareTop("GET "+q+"/products/top", body, w.units())
		}
	}
	close(jobs)
	wg.Wait()
	slices.Sort(models)
	return checked, models
}

func readLog(ctx context.Context, store eventstore.Store) ([]eventstore.Record, error) {
	var out []eventstore.Record
	for r, err := range store.ReadAll(ctx, eventstore.Position{}) {
		if err != nil {
			return nil, fmt.Errorf("chaos: reading the log: %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}

func sep(path string) string {
	if slices.Contains([]byte(path), '?') {
		return "&"
	}
	return "?"
}

func anyKey[V any](m map[string]V) string {
	for k := range m {
		return k
	}
	return "none"
}

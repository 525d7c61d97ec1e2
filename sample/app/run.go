package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/breaker/redisbreaker"
	"github.com/eventline/eventline/breaker/storebreaker"
	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/sample/http/commandapi"
	"github.com/eventline/eventline/sample/http/httpjson"
	"github.com/eventline/eventline/sample/http/openapi"
)

// Timeouts of the process's life.
const (
	// ShutdownTimeout bounds how long in-flight requests may finish after a
	// signal.
	ShutdownTimeout = 10 * time.Second
	// readyTimeout bounds one /readyz probe.
	readyTimeout = 2 * time.Second
)

// Run runs role with cfg until ctx ends (a signal, in the binary), then shuts
// down gracefully: it stops accepting requests, lets in-flight ones finish
// (at most ShutdownTimeout), stops the projection runners, and closes Redis
// and the event store. It returns nil after a clean shutdown. A bad setting
// is a *SettingError, returned before anything starts.
func Run(ctx context.Context, role Role, cfg Config) error {
	return run(ctx, role, cfg, defaultParts())
}

func run(ctx context.Context, role Role, cfg Config, p parts) (err error) {
	if err := cfg.Validate(role); err != nil {
		return err
	}
	log := cfg.Logger
	if log == nil {
		level, _ := parseLevel(cfg.LogLevel)
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	log = log.With("role", string(role))
	logRedisTo(log, lowestLevel(ctx, log))
	stdout := cfg.Stdout
	if stdout == nil {
		stdout = os.Stdout
	}

	// Everything opened below is closed in reverse order on the way out.
	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()

	// The tracer provider is stopped last, flushing the spans of everything
	// stopped before it.
	tp, stopTracing, err := tracerProvider(ctx, role, cfg, stdout, log)
	if err != nil {
		return err
	}
	closers = append(closers, stopTracing)

	// Listen before anything else starts: a taken port is the commonest
	// mistake, and it must be reported at once, not after the store, Redis,
	// the projectors and the saga have started only to be stopped again.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return addrError("cannot listen", err)
	}
	// Serve closes ln when it runs; this closes it on the way out of a
	// failed start (closing twice is harmless).
	closers = append(closers, func() { _ = ln.Close() })

	reg := NewRegistry()
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// One circuit breaker per dependency of the process, shared by its roles.
	deps := newBreakers(cfg, log, metrics)

	var store eventstore.Store
	if needsStore(role) {
		spec, _ := parseStoreURL(cfg.StoreURL) // validated above
		if store, err = openStore(ctx, spec, log, metrics); err != nil {
			return err
		}
		closers = append(closers, func() {
			if err := store.Close(); err != nil {
				log.Warn("closing the event store", "error", err)
			}
		})
		if p.wrapStore != nil {
			store = p.wrapStore(store)
		}
	}
	var rdb redis.UniversalClient
	if needsRedis(role) {
		c, stop, err := redisClient(cfg.RedisURL, log)
		if err != nil {
			return err
		}
		b, err := deps.get(breakerRedis)
		if err != nil {
			_ = c.Close()
			stop()
			return err
		}
		// Every use of Redis in the process (read models, checkpoints,
		// leases, Streams) goes through the breaker.
		c.AddHook(redisbreaker.Hook(b))
		rdb = c
		closers = append(closers, stop, func() { _ = c.Close() })
	}

	mux := http.NewServeMux()
	var checks []check
	if role == RoleServe || role == RoleCommandAPI {
		b, err := deps.get(breakerStore)
		if err != nil {
			return err
		}
		// The commands reach the store through its breaker, each call
		// bounded by StoreTimeout; the projectors and the saga follow the
		// log on their own terms (they retry with back-off).
		guarded, err := storebreaker.Wrap(store, storebreaker.Config{Breaker: b, Timeout: cfg.StoreTimeout})
		if err != nil {
			return err
		}
		cmds, err := commandapi.New(guarded, reg, commandapi.Config{Logger: log, Registerer: metrics,
			Handler: command.Config{TracerProvider: tp}})
		if err != nil {
			return err
		}
		cmds.Mount(mux)
	}
	if needsStore(role) {
		checks = append(checks, check{"store", func(ctx context.Context) error { return pingStore(ctx, store) }})
	}
	if needsRedis(role) {
		checks = append(checks, check{"redis", func(ctx context.Context) error { return pingRedis(ctx, rdb) }})
	}
	if role == RoleServe || role == RoleQueryAPI {
		if p.mountQueries != nil {
			// Readiness of the queries is what they serve from: the read
			// models in Redis, not just a Redis that answers PING.
			ready, closeQueries := p.mountQueries(rdb, mux, cfg, log, metrics)
			closers = append(closers, closeQueries)
			checks = append(checks, check{"read-models", ready})
		} else {
			log.Warn("this build has no query API (sample/http/queryapi)")
		}
		page, err := mountWeb(ctx, role, cfg, store, rdb, reg, mux, log, metrics, p)
		if err != nil {
			return err
		}
		closers = append(closers, page.Close)
	}

	runCtx, cancelRunners := context.WithCancel(ctx)
	var runners sync.WaitGroup
	closeTransport := func() {}
	// Runners stop before Redis and the store close, also when a step below
	// fails after some of them started.
	closers = append(closers, func() { cancelRunners(); runners.Wait(); closeTransport() })
	if role == RoleServe || role == RoleProjector {
		pool, err := startProjections(runCtx, &runners, store, rdb, reg, metrics, log, p, cfg.CartsPartitions, tp)
		if err != nil {
			return err
		}
		checks = append(checks, check{"projections", pool.check})
	}
	if role == RoleServe || role == RoleSaga {
		closeSaga, err := startSaga(runCtx, &runners, role, cfg.BrokerURL, store, rdb, reg, metrics, log, deps, tp)
		if err != nil {
			return err
		}
		closeTransport = closeSaga
	}

	if err := mountOps(mux, metrics, checks, deps); err != nil {
		return err
	}

	srv := &http.Server{
		// Unknown routes and wrong methods answer the JSON error body of
		// every other error, on every role (the ops endpoints included).
		Handler:           traced(httpjson.Mux(mux), role, tp),
		ReadHeaderTimeout: 10 * time.Second,
		// Bodies are small (httpjson.MaxBodyBytes); the longest answer is a
		// query waiting for ?after= (queryapi.DefaultWaitTimeout), well inside
		// WriteTimeout. Idle keep-alive connections are closed eventually.
		ReadTimeout:  30 * time.Second,
		WriteTimeout: 60 * time.Second,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:  func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	url := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, "cart %s listening on %s\n", role, url)
	log.Info("listening", "url", url)

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-served:
		return fmt.Errorf("app: http server: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown: in-flight requests cut off", "error", err)
		_ = srv.Close()
	}
	<-served
	return nil
}

// check is one dependency /readyz probes.
type check struct {
	name string
	run  func(context.Context) error
}

// ReadyBody is the JSON body of /readyz.
type ReadyBody struct {
	// Status is "ready" (HTTP 200) or "unavailable" (HTTP 503).
	Status string `json:"status"`
	// Checks maps each dependency to "ok" or what went wrong.
	Checks map[string]string `json:"checks"`
	// Breakers maps each dependency's circuit breaker to its state:
	// closed, half-open or open. An open one makes the process unavailable.
	Breakers map[string]string `json:"breakers,omitempty"`
}

// mountOps mounts the operations endpoints, counted under api="ops".
func mountOps(mux *http.ServeMux, metrics *prometheus.Registry, checks []check, deps *breakers) error {
	stats, err := httpjson.NewMetrics("ops", metrics)
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	checks = append(checks, check{"breakers", deps.check})
	stats.HandleFunc(mux, "GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	stats.HandleFunc(mux, "GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		body := ReadyBody{Status: "ready", Checks: make(map[string]string, len(checks)), Breakers: deps.states()}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, c := range checks {
			wg.Go(func() {
				res := "ok"
				if err := c.run(ctx); err != nil {
					res = err.Error()
				}
				mu.Lock()
				body.Checks[c.name] = res
				if res != "ok" {
					body.Status = "unavailable"
				}
				mu.Unlock()
			})
		}
		wg.Wait()
		status := http.StatusOK
		if body.Status != "ready" {
			status = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
	})
	mux.Handle("GET /metrics", stats.Route("GET /metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{Registry: metrics})))
	mux.Handle("GET "+openapi.Path, stats.Route("GET "+openapi.Path, openapi.Handler()))
	return nil
}

// projections are the runners of one process.
type projections struct {
	mu     sync.Mutex
	failed map[string]error // runners that stopped with an error, by projection
}

// startProjections starts one runner per projection, owned by wg; they stop
// when ctx ends.
func startProjections(ctx context.Context, wg *sync.WaitGroup, store eventstore.Store, rdb redis.UniversalClient,
	reg *eventstore.Registry, metrics prometheus.Registerer, log *slog.Logger, p parts, cartsPartitions int, tp trace.TracerProvider) (*projections, error) {
	pool := &projections{failed: map[string]error{}}
	if p.projections == nil {
		log.Warn("this build has no read models (sample/readmodel)")
		return pool, nil
	}
	type named struct {
		name string
		r    *projection.Runner
	}
	var runners []named
	// The runners of this process share one reading of the log while they
	// are at the same place (catching up together, or following the head).
	shared := eventstore.NewSharedLog(store, eventstore.SharedLogOptions{})
	for _, proj := range p.projections(reg, cartsPartitions) {
		r, err := projection.NewRunner(projection.Config{
			Store: shared, Redis: rdb, Projection: proj, Logger: log, Registerer: metrics, TracerProvider: tp,
		})
		if err != nil {
			return nil, fmt.Errorf("app: projection %s: %w", proj.Name(), err)
		}
		runners = append(runners, named{proj.Name(), r})
	}
	for _, proj := range p.projections(reg, cartsPartitions) {
		// Rebuilds asked for by a process without the store (the web page
		// of query-api) are run here, by one of the projectors.
		wg.Go(func() {
			cfg := projection.Config{Store: store, Redis: rdb, Projection: proj, Logger: log, TracerProvider: tp}
			if err := projection.ServeRebuildRequests(ctx, projection.ServeRebuildOptions{Config: cfg, Interval: time.Second}); err != nil {
				log.Error("rebuild requests not served", "projection", proj.Name(), "error", err)
			}
		})
	}
	for _, n := range runners {
		wg.Go(func() {
			if err := n.r.Run(ctx); err != nil {
				// A stopped projection needs an operator (status, replay);
				// the process stays up and /readyz says what stopped.
				log.Error("projection stopped", "projection", n.name, "error", err)
				pool.mu.Lock()
				pool.failed[n.name] = err
				pool.mu.Unlock()
			}
		})
	}
	return pool, nil
}

func (p *projections) check(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for name, err := range p.failed {
		errs = append(errs, fmt.Errorf("projection %s stopped: %w", name, err))
	}
	return errors.Join(errs...)
}

// lowestLevel is the lowest level log writes, for the libraries that take a
// level of their own (go-redis).
func lowestLevel(ctx context.Context, log *slog.Logger) slog.Level {
	for _, l := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn} {
		if log.Enabled(ctx, l) {
			return l
		}
	}
	return slog.LevelError
}

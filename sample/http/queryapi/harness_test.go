package queryapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/query"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/domain/customer"
	"github.com/eventline/eventline/sample/domain/order"
	"github.com/eventline/eventline/sample/http/httpjson"
	"github.com/eventline/eventline/sample/http/queryapi"
	"github.com/eventline/eventline/sample/readmodel"
	"github.com/eventline/eventline/sample/readmodel/schema"
)

// harness is the sample's read path over a real redis-server: the domain's
// command handlers append to an in-memory log, projection runners keep the
// read models, and the query API answers over HTTP.
type harness struct {
	t         testing.TB
	ctx       context.Context
	reg       *eventstore.Registry
	store     *memory.Store
	redis     *redistest.Server
	rdb       *redis.Client
	metrics   *prometheus.Registry
	url       string
	api       *queryapi.API
	carts     *command.Handler[cart.State, cart.Command, cart.Event]
	orders    *command.Handler[order.State, order.Command, order.Event]
	customers *command.Handler[customer.State, customer.Command, customer.Event]
	// cartsPartitions is the carts model's partition count
	// (readmodel.Options.CartsPartitions) startProjectors runs it with.
	cartsPartitions int
}

func newHarness(t testing.TB, opts redistest.Options) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	reg := eventstore.NewRegistry()
	cart.RegisterEvents(reg)
	order.RegisterEvents(reg)
	customer.RegisterEvents(reg)
	srv := redistest.StartWith(t, opts)
	h := &harness{t: t, ctx: ctx, reg: reg, store: memory.New(), redis: srv, metrics: prometheus.NewRegistry()}
	t.Cleanup(func() { _ = h.store.Close() })
	// Few retries: a killed server should answer 503 quickly.
	h.rdb = redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: 1})
	t.Cleanup(func() { _ = h.rdb.Close() })
	var err error
	quiet := slog.New(slog.DiscardHandler)
	if h.carts, err = command.NewHandler(h.store, reg, cart.Decider, command.Config{Name: "cart", Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	if h.orders, err = command.NewHandler(h.store, reg, order.Decider, command.Config{Name: "order", Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	if h.customers, err = command.NewHandler(h.store, reg, customer.Decider, command.Config{Name: "customer", Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	// A bound for ?after= waits, long enough for runners on a busy machine
	// (a wait ends as soon as the position is reached); TestAfterTimeout
	// has its own short one.
	h.api = h.serve(queryapi.Config{WaitTimeout: 2 * time.Minute})
	return h
}

// serve points h at a new query API with cfg (quiet unless cfg.Logger is
// set, its metrics in h.metrics unless cfg.Registerer is set), closed when the test ends, and returns it.
func (h *harness) serve(cfg queryapi.Config) *queryapi.API {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = h.metrics
	}
	api := queryapi.New(h.rdb, cfg)
	h.t.Cleanup(func() { _ = api.Close() })
	hs := httptest.NewServer(api.Handler())
	h.t.Cleanup(hs.Close)
	h.url = hs.URL
	return api
}

// startProjectors runs one runner per projection until the test ends. cfg
// supplies batching; Store, Redis, Projection and Registerer are filled in.
func (h *harness) startProjectors(cfg projection.Config) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(h.ctx)
	var wg sync.WaitGroup
	h.t.Cleanup(func() { cancel(); wg.Wait() })
	for _, p := range readmodel.ProjectionsWith(h.reg, readmodel.Options{CartsPartitions: h.cartsPartitions}) {
		c := cfg
		c.Store, c.Redis, c.Projection, c.Registerer = h.store, h.rdb, p, h.metrics
		c.Logger = slog.New(slog.DiscardHandler)
		c.MaxBackoff = 100 * time.Millisecond
		r, err := projection.NewRunner(c)
		if err != nil {
			h.t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				h.t.Errorf("runner %s: %v", p.Name(), err)
			}
		}()
	}
}

// waitActive waits until every projection has an active version.
func (h *harness) waitActive() {
	h.t.Helper()
	h.eventually(func() bool {
		for _, name := range []string{schema.Carts, schema.Customers, schema.Products, schema.Orders} {
			if _, err := query.Resolve(h.ctx, h.rdb, name); err != nil {
				return false
			}
		}
		return true
	})
}

// eventually polls cond until it holds, failing the test after 20 s.
func (h *harness) eventually(cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatal("condition not met within 20s")
		}
		<-tick.C
	}
}

// cart runs a cart command and returns its result, failing on refusal.
func (h *harness) cart(id string, cmd cart.Command) command.Result[cart.Event] {
	h.t.Helper()
	res, err := h.carts.Handle(h.ctx, id, cmd)
	if err != nil {
		h.t.Fatalf("cart %s %T%+v: %v", id, cmd, cmd, err)
	}
	return res
}

func (h *harness) order(id string, cmd order.Command) command.Result[order.Event] {
	h.t.Helper()
	res, err := h.orders.Handle(h.ctx, id, cmd)
	if err != nil {
		h.t.Fatalf("order %s %T%+v: %v", id, cmd, cmd, err)
	}
	return res
}

func (h *harness) customer(id string, cmd customer.Command) command.Result[customer.Event] {
	h.t.Helper()
	res, err := h.customers.Handle(h.ctx, id, cmd)
	if err != nil {
		h.t.Fatalf("customer %s %T%+v: %v", id, cmd, cmd, err)
	}
	return res
}

// get returns the status and body of GET path; it fails the test on a
// response that is not JSON.
func (h *harness) get(path string) (int, []byte) {
	h.t.Helper()
	resp, err := http.Get(h.url + path)
	if err != nil {
		h.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("GET %s: %v", path, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		h.t.Fatalf("GET %s: %d with Content-Type %q: %s", path, resp.StatusCode, ct, body)
	}
	if !json.Valid(body) {
		h.t.Fatalf("GET %s: %d, invalid JSON: %s", path, resp.StatusCode, body)
	}
	return resp.StatusCode, body
}

// answer is the status and body of a GET sent by getLater; status 0 means
// the request failed, and body holds why.
type answer struct {
	status int
	body   []byte
}

// getLater sends GET path from a goroutine of its own and delivers the
// answer on the returned channel, for a query that waits. The goroutine
// reports a failure in the answer rather than through h.t: FailNow may only
// be called from the test's goroutine. It ends with the request, which the
// API's WaitTimeout bounds.
func (h *harness) getLater(path string) <-chan answer {
	done := make(chan answer, 1)
	go func() {
		resp, err := http.Get(h.url + path)
		if err != nil {
			done <- answer{body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			done <- answer{body: []byte(err.Error())}
			return
		}
		done <- answer{resp.StatusCode, body}
	}()
	return done
}

// getJSON decodes a 200 answer of GET path into dst.
func (h *harness) getJSON(path string, dst any) {
	h.t.Helper()
	status, body := h.get(path)
	if status != http.StatusOK {
		h.t.Fatalf("GET %s: %d %s", path, status, body)
	}
	if err := json.Unmarshal(body, dst); err != nil {
		h.t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

// wantError checks that GET path answers status with an error body of code.
func (h *harness) wantError(path string, status int, code string) {
	h.t.Helper()
	got, body := h.get(path)
	var e httpjson.Body
	if err := json.Unmarshal(body, &e); err != nil || got != status || e.Code != code || e.Error == "" {
		h.t.Fatalf("GET %s: %d %s, want %d with code %q", path, got, body, status, code)
	}
}

// counter returns the value of a projection counter for one projection.
func (h *harness) counter(name, projectionName string) float64 {
	h.t.Helper()
	mfs, err := h.metrics.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "projection" && l.GetValue() == projectionName {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

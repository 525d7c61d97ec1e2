package queryapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/query"
	"github.com/eventline/eventline/sample/http/httpjson"
	"github.com/eventline/eventline/sample/readmodel/schema"
)

// DefaultWaitTimeout bounds a ?after= wait when Config.WaitTimeout is zero.
const DefaultWaitTimeout = 5 * time.Second

// Limits of GET /products/top.
const (
	DefaultTopLimit = 10
	MaxTopLimit     = 100
)

// MaxIDLen is the longest cart, customer or order id, in bytes, as on the
// command side.
const MaxIDLen = 128

// HeaderPosition answers every successful query: the position token of the
// read model's checkpoint, read in the same MULTI/EXEC as the answer (the
// runner writes a batch and its checkpoint in one transaction too). The
// answer is the model exactly at that position, so a client sees how fresh
// it is and can compare it with the position a command returned. On a
// partitioned model (the carts model with CartsPartitions > 1) it is the
// checkpoint of the partition holding the entry, which has applied every
// record of the log up to it.
const HeaderPosition = "Eventline-Position"

// Config configures an API. Every field has a usable zero value.
type Config struct {
	// WaitTimeout bounds how long a query with ?after= waits for the read
	// model to reach that position. Default DefaultWaitTimeout.
	WaitTimeout time.Duration
	// MaxWaiters caps the queries waiting for ?after= at once; the excess
	// is answered 503 overloaded with Retry-After. Zero means no cap.
	MaxWaiters int
	// FallbackPoll is how often waiting queries re-check the read model
	// without a commit notification (query.WatcherConfig.FallbackPoll).
	// Default query.DefaultFallbackPoll.
	FallbackPoll time.Duration
	// ActiveTTL bounds how stale the active version a query reads through
	// may be (query.WatcherConfig.ActiveTTL); keep it well below the
	// projectors' RetireDelay. Default query.DefaultActiveTTL.
	ActiveTTL time.Duration
	// NoCoalesce sends each query's read transaction on its own instead of
	// coalescing those of concurrent queries into shared ones
	// (query.Coalescer); for comparison.
	NoCoalesce bool
	// Logger receives one line per request answered with a 5xx other than
	// not_ready, timeout and overloaded. nil means slog.Default().
	Logger *slog.Logger
	// Registerer, when set, gets the API's request metrics
	// (eventline_http_requests_total and
	// eventline_http_request_duration_seconds, labelled api="query" and the
	// route pattern). A Registerer that holds another metric of those names
	// is logged and the API serves without metrics.
	Registerer prometheus.Registerer
}

// API serves the sample's queries from Redis alone. It is safe for
// concurrent use. It holds a query.Watcher (one pub/sub connection) that
// Close releases; the client belongs to the caller.
type API struct {
	rdb redis.UniversalClient
	// reads is rdb with the read transactions of concurrent queries
	// coalesced into shared ones (query.Coalescer).
	reads    redis.Cmdable
	coalesce *query.Coalescer
	watch    *query.Watcher
	wait     time.Duration
	log      *slog.Logger
	stats    *httpjson.Metrics
}

// New returns an API reading the read models of sample/readmodel from rdb.
// Call Close when done with it.
func New(rdb redis.UniversalClient, cfg Config) *API {
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = DefaultWaitTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := query.NewWatcher(rdb, query.WatcherConfig{FallbackPoll: cfg.FallbackPoll, MaxWaiters: cfg.MaxWaiters,
		ActiveTTL: cfg.ActiveTTL, Logger: cfg.Logger})
	stats, err := httpjson.NewMetrics("query", cfg.Registerer)
	if err != nil {
		cfg.Logger.Error("queryapi: serving without request metrics", "error", err)
		stats, _ = httpjson.NewMetrics("query", nil)
	}
	a := &API{rdb: rdb, reads: rdb, watch: w, wait: cfg.WaitTimeout, log: cfg.Logger, stats: stats}
	if !cfg.NoCoalesce {
		a.coalesce = query.NewCoalescer(rdb)
		a.reads = a.coalesce.Client()
	}
	return a
}

// Close stops the API's watcher and read coalescer: queries still waiting
// for ?after= are answered 503. Stop the HTTP server first.
func (a *API) Close() error {
	err := a.watch.Close()
	if a.coalesce != nil {
		err = errors.Join(err, a.coalesce.Close())
	}
	return err
}

// Waiting returns the number of queries waiting for ?after= now.
func (a *API) Waiting() int { return a.watch.Waiting() }

// Mount registers the query endpoints on mux: GET /carts/{id},
// GET /customers/{id}/carts, GET /orders/{id} and GET /products/top.
//
// The carts model may be partitioned (readmodel.Options.CartsPartitions):
// GET /carts/{id} reads the cart from its partition, found from the cart id
// and the partition count of the live build (query.View.KeyFor), and its
// ?after= waits for that partition alone (query.Watcher.WaitForKey); the
// position it answers is that partition's checkpoint. No endpoint lists
// carts from the carts model: a customer's carts come from the customers
// model, which is not partitioned.
func (a *API) Mount(mux *http.ServeMux) {
	a.stats.HandleFunc(mux, "GET /carts/{id}", a.getCart)
	a.stats.HandleFunc(mux, "GET /customers/{id}/carts", a.getCustomer)
	a.stats.HandleFunc(mux, "GET /orders/{id}", a.getOrder)
	a.stats.HandleFunc(mux, "GET /products/top", a.getTopProducts)
}

// Handler returns a handler of only the query endpoints; unknown routes and
// wrong methods get the JSON error body (httpjson.Mux).
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	a.Mount(mux)
	return httpjson.Mux(mux)
}

// ReadModels are the projections the API reads, in the order Ready checks
// them.
var ReadModels = []string{schema.Carts, schema.Customers, schema.Orders, schema.Products}

// ErrNotReady is returned by Ready when Redis answers but a read model the
// API serves has no active build there.
var ErrNotReady = errors.New("queryapi: read models not ready")

// Ready reports whether the API can answer queries: it resolves every read
// model in ReadModels the way a query does, and returns the first error that
// says Redis cannot be reached, else an error matching ErrNotReady (and
// query.ErrNotReady) naming each read model without an active build. A
// PING would not do: a Redis that answers but does not hold the read models
// (restarted without its data, or another server now on the same address)
// would pass it while every query answers 503.
func (a *API) Ready(ctx context.Context) error {
	var missing []error
	for _, name := range ReadModels {
		_, err := query.Resolve(ctx, a.rdb, name)
		switch {
		case err == nil:
		case errors.Is(err, query.ErrNotReady):
			missing = append(missing, err)
		default:
			return err
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %w", ErrNotReady, errors.Join(missing...))
	}
	return nil
}

// TopProducts is the body of GET /products/top.
type TopProducts struct {
	Products []schema.ProductUnits `json:"products"`
}

func (a *API) getCart(w http.ResponseWriter, r *http.Request) {
	a.serve(w, r, schema.Carts, byID, func(ctx context.Context, v *query.View, id string, _ url.Values) (any, eventstore.Position, error) {
		return schema.ReadCart(ctx, a.reads, v, id)
	})
}

func (a *API) getOrder(w http.ResponseWriter, r *http.Request) {
	a.serve(w, r, schema.Orders, withID, func(ctx context.Context, v *query.View, id string, _ url.Values) (any, eventstore.Position, error) {
		return schema.ReadOrder(ctx, a.reads, v, id)
	})
}

func (a *API) getCustomer(w http.ResponseWriter, r *http.Request) {
	a.serve(w, r, schema.Customers, withID, func(ctx context.Context, v *query.View, id string, _ url.Values) (any, eventstore.Position, error) {
		return schema.ReadCustomer(ctx, a.reads, v, id)
	})
}

func (a *API) getTopProducts(w http.ResponseWriter, r *http.Request) {
	a.serve(w, r, schema.Products, noID, func(ctx context.Context, v *query.View, _ string, q url.Values) (any, eventstore.Position, error) {
		limit := DefaultTopLimit
		if q.Has("limit") {
			n, err := strconv.Atoi(q.Get("limit"))
			if err != nil || n < 1 || n > MaxTopLimit {
				return nil, eventstore.Position{}, malformed("limit must be an integer from 1 to " + strconv.Itoa(MaxTopLimit))
			}
			limit = n
		}
		ps, pos, err := schema.TopProducts(ctx, a.reads, v, limit)
		return TopProducts{Products: ps}, pos, err
	})
}

// readFunc reads one answer from a resolved view, and the position of the
// model it read.
type readFunc func(ctx context.Context, v *query.View, id string, q url.Values) (any, eventstore.Position, error)

// idUse says what a route does with the {id} of its path.
type idUse int

const (
	// noID: the route has no {id}.
	noID idUse = iota
	// withID: the route reads the entry {id} of an unpartitioned model.
	withID
	// byID: {id} is also the partition key of the entry (the carts model,
	// partitioned by cart id): ?after= waits only for the partition that
	// holds it, and the reader reads that partition (query.View.KeyFor).
	byID
)

// serve checks the request, resolves projection name (waiting for ?after=
// when given: for the partition of {id} alone when use is byID), reads and
// answers.
func (a *API) serve(w http.ResponseWriter, r *http.Request, name string, use idUse, read readFunc) {
	ctx := r.Context()
	var id string
	if use != noID {
		id = r.PathValue("id")
		if !validID(id) {
			a.fail(w, r, malformed("id must be 1 to "+strconv.Itoa(MaxIDLen)+" bytes of [A-Za-z0-9._~-]"))
			return
		}
	}
	var q url.Values // most queries have no query string: skip parsing it
	var after eventstore.Position
	if r.URL.RawQuery != "" {
		var err error
		if q, err = url.ParseQuery(r.URL.RawQuery); err != nil {
			a.fail(w, r, malformed("malformed query string"))
			return
		}
		if after, err = eventstore.ParsePosition(q.Get("after")); err != nil {
			a.fail(w, r, malformed("after must be a position token returned by a command"))
			return
		}
	}
	var v *query.View
	var err error
	timedOut := false
	if after.IsZero() {
		// Never waits: no deadline (and no timer) to set up.
		v, err = a.watch.Resolve(ctx, name)
	} else if body, pos, ok := a.readAfter(ctx, name, use, id, q, after, read); ok {
		a.answer(w, r, body, pos)
		return
	} else {
		wctx, cancel := context.WithTimeout(ctx, a.wait)
		if use == byID {
			v, err = a.watch.WaitForKey(wctx, name, id, after)
		} else {
			v, err = a.watch.WaitFor(wctx, name, after)
		}
		timedOut = wctx.Err() != nil && ctx.Err() == nil
		cancel()
	}
	if err != nil {
		if timedOut {
			err = &httpjson.Error{Status: http.StatusGatewayTimeout, Code: httpjson.CodeTimeout,
				Message: "the read model did not reach position " + after.String() + " in " + a.wait.String(), Err: err}
		}
		a.fail(w, r, err)
		return
	}
	body, pos, err := read(ctx, v, id, q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.answer(w, r, body, pos)
}

// readAfter answers a query with ?after= in one read when the model is
// already there, which is the common case: a client sends the position its
// command returned, and the projection applied it before the client asked.
// The read returns the checkpoint it read in the same transaction as the
// answer, the very checkpoint the wait would have checked first (the
// partition of {id}'s for byID, the model's own when it has one partition),
// so an answer at or past after is what waiting would have given, with one
// round trip instead of two. It reports false, having answered nothing, when
// the model is behind, the read failed (say, the entry is not there yet) or
// the build did not resolve: the caller then waits and reads as usual.
func (a *API) readAfter(ctx context.Context, name string, use idUse, id string, q url.Values, after eventstore.Position, read readFunc) (any, eventstore.Position, bool) {
	v, err := a.watch.Resolve(ctx, name)
	if err != nil || use != byID && v.Partitions > 1 {
		return nil, eventstore.Position{}, false
	}
	body, pos, err := read(ctx, v, id, q)
	if err != nil || pos.Before(after) {
		return nil, eventstore.Position{}, false
	}
	return body, pos, true
}

// answer writes body, read at pos, as the 200 of a query.
func (a *API) answer(w http.ResponseWriter, r *http.Request, body any, pos eventstore.Position) {
	b, err := json.Marshal(body)
	if err != nil {
		a.fail(w, r, fmt.Errorf("encode the answer: %w", err))
		return
	}
	w.Header()[HeaderPosition] = []string{pos.String()}
	httpjson.WriteBody(w, http.StatusOK, b, true)
}

func malformed(msg string) *httpjson.Error {
	return httpjson.NewError(http.StatusBadRequest, httpjson.CodeMalformed, msg)
}

// errorMappings map the errors of a query to the answer the client gets.
// Every message is fixed: Redis's and package query's errors name keys and
// Go packages.
var errorMappings = []httpjson.Mapping{
	{Target: query.ErrNotFound, Status: http.StatusNotFound, Code: httpjson.CodeNotFound, Message: "not found"},
	{Target: query.ErrTooManyWaiters, Status: http.StatusServiceUnavailable, Code: httpjson.CodeOverloaded,
		Message: "too many queries are waiting for a position; retry later"},
	{Target: query.ErrNotReady, Status: http.StatusServiceUnavailable, Code: httpjson.CodeNotReady,
		Message: "the read model is being built; retry later"},
	{Match: unavailable, Status: http.StatusServiceUnavailable, Code: httpjson.CodeUnavailable,
		Message: "the read model store is unavailable; retry later"},
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := httpjson.Classify(err, errorMappings)
	if e.Code == httpjson.CodeInternal && r.Context().Err() != nil {
		// A client that went away reads no status; 503 keeps it out of the
		// 500s that mean a bug.
		e = &httpjson.Error{Status: http.StatusServiceUnavailable, Code: httpjson.CodeUnavailable,
			Message: "the read model store is unavailable; retry later", Err: err}
	}
	// An open breaker is logged once, by the breaker, not per query.
	if e.Status >= 500 && e.Code != httpjson.CodeNotReady && e.Code != httpjson.CodeTimeout && e.Code != httpjson.CodeOverloaded && e.Dependency == "" {
		a.log.Warn("query failed", "method", r.Method, "path", r.URL.Path, "status", e.Status, "error", err)
	}
	httpjson.Write(w, e)
}

// unavailable reports errors that mean Redis could not be reached or cannot
// answer for now, as opposed to a bug or bad data.
func unavailable(err error) bool {
	if ne, ok := errors.AsType[net.Error](err); ok && ne != nil {
		return true
	}
	for _, target := range []error{query.ErrWatcherClosed, query.ErrCoalescerClosed, io.EOF, io.ErrUnexpectedEOF, redis.ErrClosed, redis.ErrPoolTimeout,
		redis.ErrPoolExhausted, syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE,
		context.DeadlineExceeded} {
		if errors.Is(err, target) {
			return true
		}
	}
	return redis.IsLoadingError(err) || redis.IsClusterDownError(err) || redis.IsTryAgainError(err) ||
		redis.IsMasterDownError(err) || redis.IsMaxClientsError(err)
}

// validID reports whether id is 1 to MaxIDLen bytes of [A-Za-z0-9._~-], the
// ids the command side accepts.
func validID(id string) bool {
	if id == "" || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '_' || c == '~' || c == '-') {
			return false
		}
	}
	return true
}

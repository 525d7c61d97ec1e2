package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/query"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/readmodel/schema"
)

// contract validates real requests and responses against the served OpenAPI
// document and records which (operation, status) pairs were seen.
type contract struct {
	t      *testing.T
	s      *server
	doc    *openapi3.T
	router routers.Router
	mu     sync.Mutex
	seen   map[string]bool
}

func newContract(t *testing.T, s *server) *contract {
	t.Helper()
	res, err := http.Get(s.url + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /openapi.json: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("the document is not valid OpenAPI: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	doc.Servers = openapi3.Servers{{URL: s.url}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &contract{t: t, s: s, doc: doc, router: router, seen: map[string]bool{}}
}

// call sends a request, checks its status (unless want is 0), and validates the request and the
// response against the document. validReq says whether the document should
// accept the request: a deliberately bad request must be refused by the
// document too, so the document states each constraint the server enforces.
func (c *contract) call(method, path, contentType string, body []byte, want int, validReq bool, headers ...string) []byte {
	t := c.t
	t.Helper()
	req, err := http.NewRequest(method, c.s.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s %s: not in the document: %v", method, path, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	reqErr := openapi3filter.ValidateRequest(context.Background(), in)
	switch {
	case validReq && reqErr != nil:
		t.Errorf("%s %s: the document refuses a good request: %v", method, path, reqErr)
	case !validReq && reqErr == nil:
		t.Errorf("%s %s %s: the document accepts a request the server refuses", method, path, body)
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req = req.WithContext(ctx)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var got []byte
	stream := strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream")
	if stream {
		cancel() // endless; its status and headers are what can be checked
	} else {
		got, _ = io.ReadAll(res.Body)
	}
	if want != 0 && res.StatusCode != want {
		t.Errorf("%s %s: status %d, want %d: %s", method, path, res.StatusCode, want, got)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: res.StatusCode,
		Header: res.Header, Body: io.NopCloser(bytes.NewReader(got)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, ExcludeResponseBody: stream}}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s %s → %d %s: the response does not match the document: %v", method, path, res.StatusCode, got, err)
	}
	c.mu.Lock()
	c.seen[fmt.Sprintf("%s %d", route.Operation.OperationID, res.StatusCode)] = true
	c.mu.Unlock()
	return got
}

// unrouted sends a request no operation of the document describes and checks
// the answer against components.responses[response]: its status, its JSON
// error body and, for a 405, the Allow header.
func (c *contract) unrouted(method, path string, want int, response, allow string) {
	t := c.t
	t.Helper()
	ref := c.doc.Components.Responses[response]
	if ref == nil || ref.Value == nil {
		t.Fatalf("components.responses.%s missing", response)
	}
	res, err := http.DefaultClient.Do(mustRequest(t, method, c.s.url+path))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		t.Errorf("%s %s: status %d, want %d: %s", method, path, res.StatusCode, want, body)
	}
	mt := ref.Value.Content.Get(res.Header.Get("Content-Type"))
	if mt == nil {
		t.Fatalf("%s %s: content type %q not in components.responses.%s", method, path, res.Header.Get("Content-Type"), response)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s %s: body %s: %v", method, path, body, err)
	}
	if err := mt.Schema.Value.VisitJSON(v); err != nil {
		t.Errorf("%s %s → %d %s: body does not match components.responses.%s: %v", method, path, res.StatusCode, body, response, err)
	}
	for name, h := range ref.Value.Headers {
		if h.Value.Required && res.Header.Get(name) == "" {
			t.Errorf("%s %s: header %s missing", method, path, name)
		}
	}
	if allow != "" && res.Header.Get("Allow") != allow {
		t.Errorf("%s %s: Allow %q, want %q", method, path, res.Header.Get("Allow"), allow)
	}
	c.seen[fmt.Sprintf("%s %d", response, res.StatusCode)] = true
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func (c *contract) json(method, path, body string, want int, validReq bool, headers ...string) map[string]any {
	c.t.Helper()
	var ct string
	if body != "" {
		ct = "application/json"
	}
	b := c.call(method, path, ct, []byte(body), want, validReq, headers...)
	var v map[string]any
	_ = json.Unmarshal(b, &v)
	return v
}

// notDriven lists the documented answers the test cannot provoke in a
// healthy process, each with why ("*" for every operation, "*/command" and
// "*/query" for the command and query operations). Every other documented
// (operation, status) must be seen, so a status added to the document needs a
// case in the test or a line here.
var notDriven = map[string]string{
	"* 500":       "internal: driven on the command operations (a store that fails with an unknown error); the queries and the page answer 500 only on a bug",
	"rebuild 409": "driven on a query API (a rebuild already requested); a serve's own rebuild of the small sample models ends before a second request can collide",
	"rebuild 503": "the process is shutting down",
}

// errStoreDown is the failure of downStore.
var errStoreDown = errors.New("test: the event store is down")

// downStore is an event store whose reads and appends fail.
type downStore struct{ eventstore.Store }

func (downStore) Append(context.Context, string, eventstore.ExpectedVersion, ...eventstore.Event) (eventstore.AppendResult, error) {
	return eventstore.AppendResult{}, errStoreDown
}

func (downStore) ReadStream(context.Context, string, uint64) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) { yield(eventstore.Record{}, errStoreDown) }
}

// contendedStore refuses every checkout's append as a concurrent write,
// as if another writer always got there first.
type contendedStore struct{ eventstore.Store }

func (s contendedStore) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	for _, e := range events {
		if e.Type == cart.TypeCheckedOut {
			return eventstore.AppendResult{}, fmt.Errorf("test: a concurrent write: %w", eventstore.ErrWrongVersion)
		}
	}
	return s.Store.Append(ctx, stream, expected, events...)
}

// on returns a contract for another server of the same document, sharing
// the record of what was seen.
func (c *contract) on(s *server) *contract {
	c.t.Helper()
	c.doc.Servers = append(c.doc.Servers, &openapi3.Server{URL: s.url})
	router, err := legacy.NewRouter(c.doc)
	if err != nil {
		c.t.Fatal(err)
	}
	return &contract{t: c.t, s: s, doc: c.doc, router: router, seen: c.seen}
}

var commandOps = []string{"openCart", "addItem", "changeQuantity", "removeItem", "checkOut", "registerCustomer"}
var queryOps = []string{"getCartView", "getCustomer", "getOrder", "getTopProducts"}

// excused reports whether an undriven (operation, status) is listed.
func excused(op string, status int) bool {
	keys := []string{fmt.Sprintf("%s %d", op, status), fmt.Sprintf("* %d", status)}
	if slices.Contains(commandOps, op) {
		keys = append(keys, fmt.Sprintf("*/command %d", status))
	}
	if slices.Contains(queryOps, op) {
		keys = append(keys, fmt.Sprintf("*/query %d", status))
	}
	for _, k := range keys {
		if _, ok := notDriven[k]; ok {
			return true
		}
	}
	return false
}

// TestOpenAPIDocumentMatchesTheServer drives every endpoint of `cart serve`,
// every error it can provoke, and validates each request and response against
// the served /openapi.json with kin-openapi.
func TestOpenAPIDocumentMatchesTheServer(t *testing.T) {
	rs := redistest.Start(t)
	s := startServeWith(t, func(c *Config) { c.RedisURL = rs.URL; c.AdminToken = "secret-token"; c.MaxWaiters = 1 })
	c := newContract(t, s)
	big := `{"customer_id":"` + strings.Repeat("x", 70<<10) + `","credit_limit_cents":1}`

	// Commands.
	c.json("POST", "/customers", `{"customer_id":"ann","credit_limit_cents":5000}`, 201, true,
		"Idempotency-Key", "reg-ann", "X-Correlation-ID", "corr-1")
	c.json("POST", "/customers", `{"credit_limit_cents":5000}`, 201, true)
	c.json("POST", "/customers", `{"customer_id":"ann","credit_limit_cents":5000}`, 409, true)
	c.json("POST", "/customers", `{"customer_id":"bob","credit_limit_cents":"lots"}`, 400, false)
	c.json("POST", "/customers", `{"customer_id":"bob","credit_limit_cents":-5}`, 422, true)
	c.call("POST", "/customers", "text/plain", []byte(`{"credit_limit_cents":1}`), 415, false)
	c.call("POST", "/customers", "application/json", []byte(big), 413, true)

	c.json("POST", "/carts", `{"customer_id":"ann","cart_id":"c1"}`, 201, true)
	c.json("POST", "/carts", `{"customer_id":"ann"}`, 201, true, "Idempotency-Key", "open-2")
	c.json("POST", "/carts", `{"customer_id":"ann","cart_id":"c1"}`, 409, true)
	c.json("POST", "/carts", `{"customer_id":"not an id!","cart_id":"c9"}`, 422, true)
	c.json("POST", "/carts", `{"cart_id":"c9"}`, 400, false)
	c.json("POST", "/carts", `{"customer_id":"ann","cart_id":"c9"}`, 400, false, "Idempotency-Key", "")
	c.call("POST", "/carts", "text/plain", []byte(`{"customer_id":"ann"}`), 415, false)
	c.call("POST", "/carts", "application/json", []byte(big), 413, false)

	item := `{"product_id":"apple","quantity":2,"unit_price_cents":150}`
	c.json("POST", "/carts/c1/items", item, 200, true, "Idempotency-Key", "add-apple")
	c.json("POST", "/carts/c1/items", `{"product_id":"pear","quantity":1,"unit_price_cents":99}`, 409, true, "Idempotency-Key", "add-apple")
	c.json("POST", "/carts/nope/items", item, 404, true)
	c.json("POST", "/carts/c1/items", `{"product_id":"apple","quantity":0,"unit_price_cents":150}`, 422, true)
	c.json("POST", "/carts/c1/items", `{"product_id":"apple"}`, 400, false)
	c.call("POST", "/carts/c1/items", "text/plain", []byte(item), 415, false)
	c.call("POST", "/carts/c1/items", "application/json", []byte(big), 413, false)

	c.json("PUT", "/carts/c1/items/apple", `{"quantity":3}`, 200, true, "Idempotency-Key", "qty-3")
	c.json("PUT", "/carts/c1/items/apple", `{"quantity":4}`, 409, true, "Idempotency-Key", "qty-3")
	c.json("PUT", "/carts/c1/items/pear", `{"quantity":3}`, 404, true)
	c.json("PUT", "/carts/c1/items/apple", `{"quantity":0}`, 422, true)
	c.json("PUT", "/carts/c1/items/apple", `{"quantity":"3"}`, 400, false)
	c.json("PUT", "/carts/c1/items/a%20b", `{"quantity":3}`, 400, false)
	c.call("PUT", "/carts/c1/items/apple", "text/plain", []byte(`{"quantity":3}`), 415, false)
	c.call("PUT", "/carts/c1/items/apple", "application/json", []byte(`{"quantity":3,"x":"`+strings.Repeat("x", 70<<10)+`"}`), 413, false)

	c.json("POST", "/carts/c1/items", `{"product_id":"pear","quantity":1,"unit_price_cents":99}`, 200, true)
	c.json("DELETE", "/carts/c1/items/pear", "", 200, true, "Idempotency-Key", "del-pear")
	c.json("DELETE", "/carts/c1/items/apple", "", 409, true, "Idempotency-Key", "del-pear")
	c.json("DELETE", "/carts/c1/items/pear", "", 404, true)
	c.json("DELETE", "/carts/c1/items/a%20b", "", 400, false)

	c.json("POST", "/carts", `{"customer_id":"ann","cart_id":"empty"}`, 201, true)
	c.json("POST", "/carts/empty/checkout", "", 422, true)
	c.json("POST", "/carts/c1/checkout", "", 400, false, "X-Correlation-ID", "")
	co := c.json("POST", "/carts/c1/checkout", "", 200, true, "Idempotency-Key", "co-1", "X-Correlation-ID", "corr-co")
	c.json("POST", "/carts/nope/checkout", "", 404, true)
	orderID, _ := co["order_id"].(string)
	pos, _ := co["position"].(string)

	// Queries. The order is placed by the saga, asynchronously.
	c.json("GET", "/carts/c1?after="+pos, "", 200, true)
	c.json("GET", "/carts/zzz", "", 404, true)
	c.json("GET", "/carts/bad%21id", "", 400, false)
	c.json("GET", "/carts/c1?after=soon", "", 400, false)
	c.json("GET", "/customers/ann/carts?after="+pos, "", 200, true)
	c.json("GET", "/customers/zzz/carts", "", 404, true)
	c.json("GET", "/customers/bad%21id/carts", "", 400, false)
	waitFor(t, "order "+orderID+" in the read model", func() bool {
		return s.do("GET", "/orders/"+orderID, "", nil) == 200
	})
	c.json("GET", "/orders/"+orderID, "", 200, true)
	c.json("GET", "/orders/zzz", "", 404, true)
	c.json("GET", "/orders/bad%21id", "", 400, false)
	c.json("GET", "/products/top?limit=5", "", 200, true)
	c.json("GET", "/products/top?limit=0", "", 400, false)
	c.json("GET", "/products/top?after=soon", "", 400, false)
	// A position far ahead: the one waiter times out (504) while a second
	// query finds the waiting room full (503 overloaded, MaxWaiters 1).
	var wg sync.WaitGroup
	statuses := make([]int, 2)
	for i := range statuses {
		wg.Go(func() {
			b := c.call("GET", fmt.Sprintf("/carts/c1?after=99999999%d", i), "", nil, 0, true)
			var e struct{ Code string }
			_ = json.Unmarshal(b, &e)
			statuses[i] = map[string]int{"timeout": 504, "overloaded": 503}[e.Code]
		})
	}
	wg.Wait()
	if slices.Sort(statuses); statuses[0] != 503 || statuses[1] != 504 {
		t.Errorf("two waiters with room for one: codes %v, want one overloaded (503) and one timeout (504)", statuses)
	}

	// The web page's JSON endpoints.
	c.json("GET", "/web/config", "", 200, true)
	c.call("GET", "/web/events", "", nil, 200, true)
	c.json("GET", "/web/deadletters?projection=carts", "", 200, true)
	c.json("GET", "/web/deadletters?projection=nope", "", 404, true)
	c.json("GET", "/web/deadletters", "", 400, false)
	c.json("GET", "/web/deadletters?projection=carts&build=x", "", 400, false)
	auth := []string{"Authorization", "Bearer secret-token"}
	c.json("POST", "/web/rebuild", `{"projection":"carts"}`, 401, true)
	c.json("POST", "/web/rebuild", `{"projection":"carts"}`, 403, true, "Authorization", "Bearer secret-token", "Origin", "http://elsewhere.example")
	c.json("POST", "/web/rebuild", `{"projection":7}`, 400, false, auth...)
	c.json("POST", "/web/rebuild", `{"projection":"nope"}`, 404, true, auth...)
	c.json("POST", "/web/rebuild", `{"projection":"products"}`, 202, true, auth...)
	c.json("POST", "/web/deadletters/retry", `{"projection":"carts","position":"3"}`, 401, true)
	c.json("POST", "/web/deadletters/retry", `{"projection":"carts","position":"3"}`, 403, true, "Authorization", "Bearer secret-token", "Sec-Fetch-Site", "cross-site")
	c.json("POST", "/web/deadletters/retry", `{"projection":"carts","position":"x"}`, 400, false, auth...)
	c.json("POST", "/web/deadletters/retry", `{"projection":"carts","position":"3"}`, 404, true, auth...)
	// A dead letter set aside as a runner would (the sample's runners stop on a
	// failing record instead): its retry is accepted and queued.
	entry, err := json.Marshal(projection.DeadLetterEntry{Position: "3", Error: "set aside by the test", At: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	rdb := rs.Client(t)
	if err := rdb.RPush(context.Background(), projection.DeadLetterKey(schema.Carts, query.Version(schema.CartsVersion)), entry).Err(); err != nil {
		t.Fatal(err)
	}
	c.json("POST", "/web/deadletters/retry", `{"projection":"carts","position":"3"}`, 202, true, auth...)

	// Routes the mux does not have: no path item can carry these answers,
	// so they are checked against the document's shared responses.
	c.unrouted("GET", "/nowhere", 404, "RouteNotFound", "")
	c.unrouted("GET", "/carts", 405, "MethodNotAllowed", "POST")
	c.unrouted("PATCH", "/carts/c1/items/apple", 405, "MethodNotAllowed", "DELETE, PUT")

	// Operations.
	c.call("GET", "/healthz", "", nil, 200, true)
	c.call("GET", "/readyz", "", nil, 200, true)
	c.call("GET", "/metrics", "", nil, 200, true)
	c.call("GET", "/openapi.json", "", nil, 200, true)

	// The event store down, behind a command API of its own: the first
	// command meets the unknown error (500) and opens the store's breaker,
	// the others are refused at once (503, the dependency named).
	down, _ := startRoleWith(t, RoleCommandAPI, Config{StoreURL: filepath.Join(t.TempDir(), "down.db"), BreakerFailures: 1},
		parts{wrapStore: func(st eventstore.Store) eventstore.Store { return downStore{st} }})
	d := c.on(&server{t: t, url: down})
	d.json("POST", "/carts", `{"customer_id":"ann","cart_id":"d1"}`, 500, true)
	d.json("POST", "/carts", `{"customer_id":"ann","cart_id":"d1"}`, 503, true)
	d.json("POST", "/carts/d1/items", item, 503, true)
	d.json("PUT", "/carts/d1/items/apple", `{"quantity":3}`, 503, true)
	d.json("DELETE", "/carts/d1/items/apple", "", 503, true)
	d.json("POST", "/carts/d1/checkout", "", 503, true)
	d.json("POST", "/customers", `{"customer_id":"dan","credit_limit_cents":1}`, 503, true)

	// Every checkout collides with a concurrent write, past the handler's
	// retries: 409.
	contended, _ := startRoleWith(t, RoleCommandAPI, Config{StoreURL: filepath.Join(t.TempDir(), "contended.db")},
		parts{wrapStore: func(st eventstore.Store) eventstore.Store { return contendedStore{st} }})
	k := c.on(&server{t: t, url: contended})
	k.json("POST", "/carts", `{"customer_id":"ann","cart_id":"k1"}`, 201, true)
	k.json("POST", "/carts/k1/items", item, 200, true)
	k.json("POST", "/carts/k1/checkout", "", 409, true)

	// A query API (no event store) records a rebuild for a projector to
	// run; with none running, a second request finds it pending: 409.
	q, _ := startRole(t, RoleQueryAPI, Config{RedisURL: redistest.Start(t).URL, AdminToken: "secret-token"})
	qc := c.on(&server{t: t, url: q})
	qc.json("POST", "/web/rebuild", `{"projection":"carts"}`, 202, true, auth...)
	qc.json("POST", "/web/rebuild", `{"projection":"carts"}`, 409, true, auth...)

	// The other queries time out waiting for a position far ahead (504),
	// at once on a query API of their own (serve has room for one waiter).
	wq, _ := startRole(t, RoleQueryAPI, Config{RedisURL: rs.URL})
	wc := c.on(&server{t: t, url: wq})
	var waits sync.WaitGroup
	for _, path := range []string{"/customers/ann/carts", "/orders/" + orderID, "/products/top"} {
		waits.Go(func() { wc.json("GET", path+"?after=999999999", "", 504, true) })
	}
	waits.Wait()

	// Redis down: the queries, the dead letters and /readyz answer 503.
	rs.Kill()
	c.json("GET", "/carts/c1", "", 503, true)
	c.json("GET", "/customers/ann/carts", "", 503, true)
	c.json("GET", "/orders/"+orderID, "", 503, true)
	c.json("GET", "/products/top", "", 503, true)
	c.json("GET", "/web/deadletters?projection=carts", "", 503, true)
	c.json("POST", "/web/deadletters/retry", `{"projection":"carts","position":"3"}`, 503, true, auth...)
	c.call("GET", "/readyz", "", nil, 503, true)

	// Every documented answer was seen, or is listed as not drivable.
	var missing []string
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			for code := range op.Responses.Map() {
				var status int
				if _, err := fmt.Sscan(code, &status); err != nil {
					t.Errorf("%s %s: response %q is not a status code", method, path, code)
					continue
				}
				key := fmt.Sprintf("%s %d", op.OperationID, status)
				if !c.seen[key] && !excused(op.OperationID, status) {
					missing = append(missing, key)
				}
			}
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("documented but neither driven nor listed in notDriven: %v", missing)
	}
}

// waitFor polls cond until it holds, failing the test after the deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}

package commandapi_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/domain/customer"
	"github.com/eventline/eventline/sample/domain/order"
	"github.com/eventline/eventline/sample/http/commandapi"
)

func newRegistry() *eventstore.Registry {
	reg := eventstore.NewRegistry()
	cart.RegisterEvents(reg)
	customer.RegisterEvents(reg)
	order.RegisterEvents(reg)
	return reg
}

// fixture is an API over a memory store.
type fixture struct {
	t     *testing.T
	store *memory.Store
	h     http.Handler
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	store := memory.New()
	t.Cleanup(func() { _ = store.Close() })
	a, err := commandapi.New(store, newRegistry(), commandapi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, store: store, h: a.Handler()}
}

type response struct {
	status int
	header http.Header
	body   string
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

func (r response) str(t *testing.T, field string) string {
	t.Helper()
	s, ok := r.json(t)[field].(string)
	if !ok || s == "" {
		t.Fatalf("body %s: field %q is not a non-empty string", r.body, field)
	}
	return s
}

// do sends a request; body "" sends none. Headers come in name, value pairs.
func (f *fixture) do(method, path, body string, headers ...string) response {
	f.t.Helper()
	var r *http.Request
	if body == "" {
		r = httptest.NewRequest(method, path, nil)
	} else {
		r = httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return response{status: w.Code, header: w.Header(), body: w.Body.String()}
}

// must sends a request and fails the test unless the status is want.
func (f *fixture) must(want int, method, path, body string, headers ...string) response {
	f.t.Helper()
	res := f.do(method, path, body, headers...)
	if res.status != want {
		f.t.Fatalf("%s %s %s: status %d, want %d; body %s", method, path, body, res.status, want, res.body)
	}
	return res
}

// types returns the event types of stream, in order.
func (f *fixture) types(stream string) []string {
	f.t.Helper()
	var out []string
	for rec, err := range f.store.ReadStream(f.t.Context(), stream, 1) {
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			return nil
		}
		if err != nil {
			f.t.Fatal(err)
		}
		out = append(out, rec.Type)
	}
	return out
}

func (f *fixture) records(stream string) []eventstore.Record {
	f.t.Helper()
	var out []eventstore.Record
	for rec, err := range f.store.ReadStream(f.t.Context(), stream, 1) {
		if err != nil {
			f.t.Fatal(err)
		}
		out = append(out, rec)
	}
	return out
}

func TestEveryEndpoint(t *testing.T) {
	f := newFixture(t)
	res := f.must(201, "POST", "/customers", `{"customer_id":"ann","credit_limit_cents":100000}`)
	if got := res.str(t, "customer_id"); got != "ann" {
		t.Fatalf("customer_id %q, want ann", got)
	}
	pos := res.str(t, "position")

	res = f.must(201, "POST", "/carts", `{"customer_id":"ann","cart_id":"c1"}`)
	if got := res.str(t, "cart_id"); got != "c1" {
		t.Fatalf("cart_id %q, want c1", got)
	}
	if p := res.str(t, "position"); p == pos {
		t.Fatalf("open cart returned the position of the previous command, %s", p)
	}
	f.must(200, "POST", "/carts/c1/items", `{"product_id":"apple","quantity":2,"unit_price_cents":150}`)
	f.must(200, "POST", "/carts/c1/items", `{"product_id":"pear","quantity":1,"unit_price_cents":90}`)
	f.must(200, "PUT", "/carts/c1/items/apple", `{"quantity":5}`)
	f.must(200, "DELETE", "/carts/c1/items/pear", "")
	res = f.must(200, "POST", "/carts/c1/checkout", "")
	orderID := res.str(t, "order_id")
	last := res.str(t, "position")
	if head, _ := f.store.Head(t.Context()); head.String() != last {
		t.Fatalf("checkout position %s, want the head %s", last, head)
	}

	want := []string{cart.TypeOpened, cart.TypeItemAdded, cart.TypeItemAdded, cart.TypeQuantityChanged, cart.TypeItemRemoved, cart.TypeCheckedOut}
	if got := f.types("cart-c1"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("cart events %v, want %v", got, want)
	}
	recs := f.records("cart-c1")
	var co cart.CheckedOut
	if err := json.Unmarshal(recs[len(recs)-1].Data, &co); err != nil {
		t.Fatal(err)
	}
	if co.OrderID != orderID || co.CustomerID != "ann" || co.TotalCents != 750 || len(co.Items) != 1 {
		t.Fatalf("checked out %+v, want order %s for ann, 5 apples at 150", co, orderID)
	}
	if got := f.types("customer-ann"); fmt.Sprint(got) != fmt.Sprint([]string{customer.TypeRegistered}) {
		t.Fatalf("customer events %v", got)
	}
	if ct := f.do("POST", "/carts", `{"customer_id":"bob"}`).header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q", ct)
	}
}

func TestServerChosenIDs(t *testing.T) {
	f := newFixture(t)
	a := f.must(201, "POST", "/carts", `{"customer_id":"ann"}`).str(t, "cart_id")
	b := f.must(201, "POST", "/carts", `{"customer_id":"ann"}`).str(t, "cart_id")
	if a == b {
		t.Fatalf("two carts opened without ids got the same id %s", a)
	}
	if err := command.ValidateID(a); err != nil {
		t.Fatal(err)
	}
	c := f.must(201, "POST", "/customers", `{"credit_limit_cents":0}`).str(t, "customer_id")
	if got := f.types("customer-" + c); len(got) != 1 {
		t.Fatalf("customer %s has events %v", c, got)
	}
}

func TestErrorStatuses(t *testing.T) {
	f := newFixture(t)
	f.must(201, "POST", "/carts", `{"customer_id":"ann","cart_id":"c1"}`)
	f.must(200, "POST", "/carts/c1/items", `{"product_id":"apple","quantity":1,"unit_price_cents":100}`)
	f.must(201, "POST", "/carts", `{"customer_id":"ann","cart_id":"done"}`)
	f.must(200, "POST", "/carts/done/items", `{"product_id":"apple","quantity":1,"unit_price_cents":100}`)
	f.must(200, "POST", "/carts/done/checkout", "")
	f.must(201, "POST", "/carts", `{"customer_id":"ann","cart_id":"empty"}`)
	f.must(200, "POST", "/carts/c1/items", `{"product_id":"kiwi","quantity":1,"unit_price_cents":100}`, "Idempotency-Key", "k1")

	item := `{"product_id":"apple","quantity":1,"unit_price_cents":100}`
	cases := []struct {
		name               string
		method, path, body string
		headers            []string
		status             int
		code               string
	}{
		{"malformed JSON", "POST", "/carts", `{"customer_id":`, nil, 400, "malformed"},
		{"missing field", "POST", "/carts/c1/items", `{"product_id":"apple"}`, nil, 400, "malformed"},
		{"unknown field", "POST", "/customers", `{"credit_limit_cents":1,"x":1}`, nil, 400, "malformed"},
		{"bad cart id", "POST", "/carts/a%20b/items", item, nil, 400, "malformed"},
		{"bad cart id in body", "POST", "/carts", `{"customer_id":"ann","cart_id":"a/b"}`, nil, 400, "malformed"},
		{"bad product id in URL", "PUT", "/carts/c1/items/a%20b", `{"quantity":1}`, nil, 400, "malformed"},
		{"empty idempotency key", "POST", "/carts/c1/items", item, []string{"Idempotency-Key", ""}, 400, "malformed"},
		{"long idempotency key", "POST", "/carts/c1/items", item, []string{"Idempotency-Key", strings.Repeat("k", 129)}, 400, "malformed"},
		{"control in idempotency key", "POST", "/carts/c1/items", item, []string{"Idempotency-Key", "a\x01b"}, 400, "malformed"},
		{"control in correlation id", "POST", "/carts/c1/checkout", "", []string{"X-Correlation-ID", "a\x7fb"}, 400, "malformed"},
		{"unknown cart: add", "POST", "/carts/nope/items", item, nil, 404, "not_found"},
		{"unknown cart: change", "PUT", "/carts/nope/items/apple", `{"quantity":2}`, nil, 404, "not_found"},
		{"unknown cart: remove", "DELETE", "/carts/nope/items/apple", "", nil, 404, "not_found"},
		{"unknown cart: checkout", "POST", "/carts/nope/checkout", "", nil, 404, "not_found"},
		{"unknown item", "DELETE", "/carts/c1/items/pear", "", nil, 404, "not_found"},
		{"cart exists", "POST", "/carts", `{"customer_id":"bob","cart_id":"c1"}`, nil, 409, "conflict"},
		{"customer exists", "POST", "/customers", `{"customer_id":"ann","credit_limit_cents":1}`, nil, 201, ""},
		{"customer exists again", "POST", "/customers", `{"customer_id":"ann","credit_limit_cents":1}`, nil, 409, "conflict"},
		{"idempotency key reused", "POST", "/carts/c1/items", `{"product_id":"kiwi","quantity":2,"unit_price_cents":100}`, []string{"Idempotency-Key", "k1"}, 409, "conflict"},
		{"too large", "POST", "/carts", `{"customer_id":"` + strings.Repeat("a", 70<<10) + `"}`, nil, 413, "too_large"},
		{"not JSON", "POST", "/customers", "credit_limit_cents=1", []string{"Content-Type", "text/plain"}, 415, "unsupported_media_type"},
		{"quantity 0", "POST", "/carts/c1/items", `{"product_id":"apple","quantity":0,"unit_price_cents":100}`, nil, 422, "rule_violated"},
		{"negative price", "POST", "/carts/c1/items", `{"product_id":"pear","quantity":1,"unit_price_cents":-1}`, nil, 422, "rule_violated"},
		{"quantity 1000", "PUT", "/carts/c1/items/apple", `{"quantity":1000}`, nil, 422, "rule_violated"},
		{"empty cart", "POST", "/carts/empty/checkout", "", nil, 422, "rule_violated"},
		{"change after checkout", "POST", "/carts/done/items", item, nil, 422, "rule_violated"},
		{"checkout twice", "POST", "/carts/done/checkout", "", nil, 422, "rule_violated"},
		{"negative credit", "POST", "/customers", `{"credit_limit_cents":-5}`, nil, 422, "rule_violated"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, _ := f.store.Head(t.Context())
			res := f.do(c.method, c.path, c.body, c.headers...)
			if res.status != c.status {
				t.Fatalf("status %d, want %d; body %s", res.status, c.status, res.body)
			}
			if c.status < 400 {
				return
			}
			if got := res.json(t)["code"]; got != c.code {
				t.Fatalf("code %v, want %s; body %s", got, c.code, res.body)
			}
			if msg, _ := res.json(t)["error"].(string); msg == "" {
				t.Fatalf("no error message: %s", res.body)
			}
			checkNoInternalNames(t, res.body)
			if after, _ := f.store.Head(t.Context()); after != before {
				t.Fatalf("a refused request wrote events: head %s → %s", before, after)
			}
		})
	}
}

func TestClosedStoreIs503(t *testing.T) {
	f := newFixture(t)
	f.must(201, "POST", "/carts", `{"customer_id":"ann","cart_id":"c1"}`)
	if err := f.store.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range [][3]string{
		{"POST", "/carts", `{"customer_id":"ann"}`},
		{"POST", "/carts/c1/items", `{"product_id":"apple","quantity":1,"unit_price_cents":100}`},
		{"PUT", "/carts/c1/items/apple", `{"quantity":1}`},
		{"DELETE", "/carts/c1/items/apple", ""},
		{"POST", "/carts/c1/checkout", ""},
		{"POST", "/customers", `{"credit_limit_cents":1}`},
	} {
		res := f.must(503, r[0], r[1], r[2])
		if res.json(t)["code"] != "unavailable" || res.header.Get("Retry-After") == "" {
			t.Fatalf("%s %s: %s, Retry-After %q", r[0], r[1], res.body, res.header.Get("Retry-After"))
		}
		checkNoInternalNames(t, res.body)
	}
}

// Every command, sent twice with one Idempotency-Key, answers identically
// and writes once; so does POST /carts without a cart id and the checkout's
// order id.
func TestIdempotentRetries(t *testing.T) {
	f := newFixture(t)
	key := func(k string) []string { return []string{"Idempotency-Key", k} }
	steps := []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/customers", `{"credit_limit_cents":5000}`, 201},
		{"POST", "/carts", `{"customer_id":"ann"}`, 201},
		{"POST", "/carts", `{"customer_id":"ann","cart_id":"c1"}`, 201},
		{"POST", "/carts/c1/items", `{"product_id":"apple","quantity":1,"unit_price_cents":100}`, 200},
		{"POST", "/carts/c1/items", `{"product_id":"pear","quantity":1,"unit_price_cents":100}`, 200},
		{"PUT", "/carts/c1/items/apple", `{"quantity":3}`, 200},
		{"DELETE", "/carts/c1/items/pear", "", 200},
		{"POST", "/carts/c1/checkout", "", 200},
	}
	for i, s := range steps {
		k := key(fmt.Sprintf("key-%d", i))
		first := f.must(s.status, s.method, s.path, s.body, k...)
		head, _ := f.store.Head(t.Context())
		for range 2 {
			again := f.must(s.status, s.method, s.path, s.body, k...)
			if again.body != first.body {
				t.Fatalf("%s %s retried: %s, first %s", s.method, s.path, again.body, first.body)
			}
		}
		if now, _ := f.store.Head(t.Context()); now != head {
			t.Fatalf("%s %s retried: wrote events, head %s → %s", s.method, s.path, head, now)
		}
	}
	if got := f.types("cart-c1"); len(got) != 6 {
		t.Fatalf("cart events %v, want 6", got)
	}
	// The key that opened a cart without an id names the same cart for ever;
	// used for another customer it is a conflict, not a second cart.
	f.must(409, "POST", "/carts", `{"customer_id":"bob"}`, key("key-1")...)
	// A checkout retried after the cart changed cannot happen (the cart is
	// checked out), and a checkout with a new key is refused.
	f.must(422, "POST", "/carts/c1/checkout", "", key("other")...)
}

func TestCorrelationID(t *testing.T) {
	f := newFixture(t)
	res := f.must(201, "POST", "/carts", `{"customer_id":"ann","cart_id":"c1"}`, "X-Correlation-ID", "req-42")
	if got := res.header.Get("X-Correlation-ID"); got != "req-42" {
		t.Fatalf("echoed correlation id %q", got)
	}
	if got := f.records("cart-c1")[0].Metadata.CorrelationID; got != "req-42" {
		t.Fatalf("event correlation id %q, want req-42", got)
	}
}

// 32 identical requests with one key at once: one set of events, 32 identical
// answers.
func TestConcurrentIdempotentRequests(t *testing.T) {
	f := newFixture(t)
	f.must(201, "POST", "/carts", `{"customer_id":"ann","cart_id":"c1"}`)
	requests := []struct{ method, path, body, key string }{
		{"POST", "/carts", `{"customer_id":"ann"}`, "open"},
		{"POST", "/carts/c1/items", `{"product_id":"apple","quantity":2,"unit_price_cents":100}`, "add"},
		{"POST", "/carts/c1/checkout", "", "checkout"},
	}
	for _, r := range requests {
		const n = 32
		bodies := make([]response, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { bodies[i] = f.do(r.method, r.path, r.body, "Idempotency-Key", r.key) })
		}
		wg.Wait()
		for i, b := range bodies {
			if b.status >= 300 || b.body != bodies[0].body {
				t.Fatalf("%s %s: answer %d is %d %s; answer 0 is %d %s", r.method, r.path, i, b.status, b.body, bodies[0].status, bodies[0].body)
			}
		}
	}
	if got := f.types("cart-c1"); fmt.Sprint(got) != fmt.Sprint([]string{cart.TypeOpened, cart.TypeItemAdded, cart.TypeCheckedOut}) {
		t.Fatalf("cart events %v: want one of each", got)
	}
	var all int
	for _, err := range f.store.ReadAll(t.Context(), eventstore.Start) {
		if err != nil {
			t.Fatal(err)
		}
		all++
	}
	if all != 4 {
		t.Fatalf("%d events in the log, want 4 (two opens, one add, one checkout)", all)
	}
}

// replica is a second API on f's store, as a second command-API process
// would be: its own handlers and state caches, the same event store.
func (f *fixture) replica() *fixture {
	f.t.Helper()
	a, err := commandapi.New(f.store, newRegistry(), commandapi.Config{})
	if err != nil {
		f.t.Fatal(err)
	}
	return &fixture{t: f.t, store: f.store, h: a.Handler()}
}

// An Idempotency-Key names one command on one entity (the cart or customer
// the request addresses): reused there for another request it is a 409 on
// every replica, whatever that replica has cached; on another entity it is
// another command.
func TestIdempotencyKeyScope(t *testing.T) {
	a := newFixture(t)
	b := a.replica()
	key := []string{"Idempotency-Key", "K"}
	a.must(201, "POST", "/carts", `{"customer_id":"ann","cart_id":"c1"}`)
	// B caches cart c1 at its first version.
	b.must(200, "POST", "/carts/c1/items", `{"product_id":"apple","quantity":1,"unit_price_cents":100}`)
	first := a.must(200, "POST", "/carts/c1/items", `{"product_id":"pear","quantity":1,"unit_price_cents":100}`, key...)
	if got := first.header.Get(commandapi.HeaderIdempotencyRecorded); got != "true" {
		t.Fatalf("%s = %q, want true", commandapi.HeaderIdempotencyRecorded, got)
	}
	head, _ := a.store.Head(t.Context())
	for name, r := range map[string]*fixture{"A": a, "B": b} {
		res := r.must(409, "POST", "/carts/c1/items", `{"product_id":"pear","quantity":50,"unit_price_cents":100}`, key...)
		if code := res.json(t)["code"]; code != "conflict" {
			t.Fatalf("replica %s: code %v, want conflict", name, code)
		}
		r.must(409, "DELETE", "/carts/c1/items/apple", "", key...)
		again := r.must(200, "POST", "/carts/c1/items", `{"product_id":"pear","quantity":1,"unit_price_cents":100}`, key...)
		if again.body != first.body || again.header.Get(commandapi.HeaderIdempotencyRecorded) != "true" {
			t.Fatalf("replica %s: retry answered %s %v, first %s", name, again.body, again.header, first.body)
		}
	}
	if now, _ := a.store.Head(t.Context()); now != head {
		t.Fatalf("refused and repeated requests wrote events: head %s → %s", head, now)
	}
	// B decides on the stored cart (1 pear), not on the 50 it was refused:
	// 999 is the most one line may hold.
	b.must(422, "POST", "/carts/c1/items", `{"product_id":"pear","quantity":999,"unit_price_cents":100}`)
	b.must(200, "POST", "/carts/c1/items", `{"product_id":"pear","quantity":998,"unit_price_cents":100}`)

	// The same key on another cart is another command.
	a.must(201, "POST", "/carts", `{"customer_id":"ann","cart_id":"c2"}`)
	other := b.must(200, "POST", "/carts/c2/items", `{"product_id":"pear","quantity":1,"unit_price_cents":100}`, key...)
	if other.body == first.body {
		t.Fatalf("the key on cart c2 answered cart c1's answer %s", first.body)
	}
	if got := len(a.types("cart-c2")); got != 2 {
		t.Fatalf("cart c2 has %d events, want 2", got)
	}
}

// A keyed command that changes nothing writes nothing, so nothing records its
// key: the answer says so (Idempotency-Recorded: false), and a retry is
// decided again on the cart as it is then, on any replica. Once a retry
// writes, its answer is recorded and every later retry gets it.
func TestIdempotencyKeyOfANoOpIsNotRecorded(t *testing.T) {
	a := newFixture(t)
	b := a.replica()
	key := []string{"Idempotency-Key", "set-apple-2"}
	a.must(201, "POST", "/carts", `{"customer_id":"ann","cart_id":"c1"}`)
	a.must(200, "POST", "/carts/c1/items", `{"product_id":"apple","quantity":2,"unit_price_cents":100}`)
	head, _ := a.store.Head(t.Context())
	noop := a.must(200, "PUT", "/carts/c1/items/apple", `{"quantity":2}`, key...)
	if got := noop.header.Get(commandapi.HeaderIdempotencyRecorded); got != "false" {
		t.Fatalf("no-op: %s = %q, want false", commandapi.HeaderIdempotencyRecorded, got)
	}
	if now, _ := a.store.Head(t.Context()); now != head {
		t.Fatalf("a no-op wrote events: head %s → %s", head, now)
	}
	// Someone changes the quantity; the retry, on the other replica, sets it
	// back, and that answer is recorded.
	a.must(200, "PUT", "/carts/c1/items/apple", `{"quantity":5}`)
	wrote := b.must(200, "PUT", "/carts/c1/items/apple", `{"quantity":2}`, key...)
	if got := wrote.header.Get(commandapi.HeaderIdempotencyRecorded); got != "true" || wrote.body == noop.body {
		t.Fatalf("retry after a change: %s, %s = %q; want a new answer, recorded", wrote.body, commandapi.HeaderIdempotencyRecorded, got)
	}
	for name, r := range map[string]*fixture{"A": a, "B": b} {
		again := r.must(200, "PUT", "/carts/c1/items/apple", `{"quantity":2}`, key...)
		if again.body != wrote.body || again.header.Get(commandapi.HeaderIdempotencyRecorded) != "true" {
			t.Fatalf("replica %s: retry answered %s, recorded answer %s", name, again.body, wrote.body)
		}
	}
	if got := len(a.types("cart-c1")); got != 4 {
		t.Fatalf("cart has %d events, want 4 (opened, added, changed to 5, changed to 2)", got)
	}
	// Without a key there is nothing to record and no header.
	if h := a.must(200, "PUT", "/carts/c1/items/apple", `{"quantity":2}`).header.Get(commandapi.HeaderIdempotencyRecorded); h != "" {
		t.Fatalf("unkeyed request answered %s: %q", commandapi.HeaderIdempotencyRecorded, h)
	}
}

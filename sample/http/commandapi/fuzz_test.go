package commandapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/sample/http/commandapi"
)

// routes are the command endpoints the fuzzer aims at; %s is replaced by the
// fuzzed cart id, %p by the fuzzed product id.
var routes = []struct{ method, path string }{
	{"POST", "/carts"},
	{"POST", "/carts/%s/items"},
	{"PUT", "/carts/%s/items/%p"},
	{"DELETE", "/carts/%s/items/%p"},
	{"POST", "/carts/%s/checkout"},
	{"POST", "/customers"},
}

// FuzzCommandAPI drives the whole command mux over a memory store with
// fuzzed routes, ids, bodies, content types and headers: it must never panic
// and never answer 5xx other than 503, and every error it writes must be a
// JSON {"error","code"} body.
func FuzzCommandAPI(f *testing.F) {
	seeds := []struct {
		route                      uint8
		cartID, productID, body    string
		contentType, key, correlID string
	}{
		{0, "", "", `{"customer_id":"ann"}`, "application/json", "", ""},
		{0, "", "", `{"customer_id":"ann","cart_id":"c1"}`, "application/json", "k", "r"},
		{0, "", "", `{"customer_id":"ann","cart_id":"open"}`, "application/json", "", ""},
		{0, "", "", `{"customer_id":""}`, "application/json", "", ""},
		{1, "open", "", `{"product_id":"apple","quantity":2,"unit_price_cents":1299}`, "application/json", "", ""},
		{1, "open", "", `{"product_id":"apple","quantity":2,"unit_price_cents":1299}`, "application/json", "k2", ""},
		{1, "open", "", `{"product_id":"apple","quantity":99999999999,"unit_price_cents":-1}`, "application/json", "", ""},
		{1, "nope", "", `{"product_id":"a","quantity":1,"unit_price_cents":1}`, "application/json; charset=utf-8", "", ""},
		{2, "open", "apple", `{"quantity":3}`, "application/json", "", ""},
		{2, "open", "apple", `{"quantity":0}`, "application/json", "", ""},
		{2, "open", "a b", `{"quantity":3}`, "application/json", "", ""},
		{3, "open", "apple", ``, "", "", ""},
		{3, "..", "%2F", ``, "", "", ""},
		{4, "open", "", ``, "", "k3", "corr"},
		{4, "open", "", `{"junk":true}`, "text/plain", "", ""},
		{5, "", "", `{"credit_limit_cents":100}`, "application/json", "", ""},
		{5, "", "", `{"customer_id":"x","credit_limit_cents":-1}`, "application/json", "", ""},
		{5, "", "", `{"credit_limit_cents":1e400}`, "application/json", "", ""},
		{0, "", "", `{"customer_id":"ann"}`, "text/plain", "\x00", "\xff"},
		{1, strings.Repeat("c", 200), "", `[`, "application/json", strings.Repeat("k", 129), ""},
		{0, "", "", strings.Repeat(`{"a":`, 3000), "application/json", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.route, s.cartID, s.productID, s.body, s.contentType, s.key, s.correlID)
	}
	store := memory.New()
	f.Cleanup(func() { _ = store.Close() })
	a, err := commandapi.New(store, newRegistry(), commandapi.Config{})
	if err != nil {
		f.Fatal(err)
	}
	h := a.Handler()
	open := httptest.NewRequest("POST", "/carts", strings.NewReader(`{"customer_id":"ann","cart_id":"open"}`))
	open.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(httptest.NewRecorder(), open)

	f.Fuzz(func(t *testing.T, route uint8, cartID, productID, body, contentType, key, correlID string) {
		rt := routes[int(route)%len(routes)]
		path := strings.ReplaceAll(rt.path, "%s", url.PathEscape(cartID))
		path = strings.ReplaceAll(path, "%p", url.PathEscape(productID))
		r, err := http.NewRequest(rt.method, "http://example.test"+path, strings.NewReader(body))
		if err != nil {
			return // not a request a client can send
		}
		if contentType != "" {
			r.Header["Content-Type"] = []string{contentType}
		}
		if key != "" {
			r.Header["Idempotency-Key"] = []string{key}
		}
		if correlID != "" {
			r.Header["X-Correlation-Id"] = []string{correlID}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %s: status %d: %s", rt.method, path, w.Code, w.Body)
		}
		if w.Code >= 400 && w.Code != http.StatusNotFound && w.Code != http.StatusMethodNotAllowed ||
			w.Code >= 400 && strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
			var e struct{ Error, Code string }
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" || e.Code == "" {
				t.Fatalf("%s %s: status %d with body %q", rt.method, path, w.Code, w.Body)
			}
		}
	})
}

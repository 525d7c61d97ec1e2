package commandapi_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/sample/http/commandapi"
)

// The command API over an in-memory store: open a cart, add an item, and
// retry the add with its Idempotency-Key, which answers the same and writes
// nothing.
func Example() {
	store := memory.New()
	defer store.Close()
	a, err := commandapi.New(store, newRegistry(), commandapi.Config{})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	a.Mount(mux)

	send := func(path, body, key string) {
		r := httptest.NewRequest("POST", path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		if key != "" {
			r.Header.Set("Idempotency-Key", key)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		fmt.Print(w.Code, " ", w.Body.String())
	}
	send("/carts", `{"customer_id":"ann","cart_id":"c1"}`, "")
	send("/carts/c1/items", `{"product_id":"apple","quantity":2,"unit_price_cents":1299}`, "add-1")
	send("/carts/c1/items", `{"product_id":"apple","quantity":2,"unit_price_cents":1299}`, "add-1")
	send("/carts/c1/items", `{"product_id":"apple","quantity":0,"unit_price_cents":1299}`, "")
	// Output:
	// 201 {"cart_id":"c1","position":"1"}
	// 200 {"position":"2"}
	// 200 {"position":"2"}
	// 422 {"error":"cart: quantity out of range: adding 0 of product \"apple\", want 1..999","code":"rule_violated"}
}

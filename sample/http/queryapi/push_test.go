package queryapi_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/http/httpjson"
	"github.com/eventline/eventline/sample/http/queryapi"
	"github.com/eventline/eventline/sample/readmodel/schema"
)

// TestAfterWokenByTheRunnersCommit: with the fallback poll an hour away, a
// query waiting for a position the log has not reached yet is answered
// once a command appends it and the runner projects it: the runner's commit
// notification woke it.
func TestAfterWokenByTheRunnersCommit(t *testing.T) {
	h := newHarness(t, redistest.Options{})
	h.startProjectors(projection.Config{})
	h.waitActive()
	pos := h.cart("w1", cart.Open{CustomerID: "hana"}).Position
	h.getJSON("/carts/w1"+after(pos), &schema.Cart{})
	api := h.serve(queryapi.Config{WaitTimeout: 15 * time.Second, FallbackPoll: time.Hour})

	next := eventstore.SeqPosition(pos.Commit + 1) // the memory log numbers records 1, 2, ...
	done := h.getLater("/carts/w1" + after(next))
	h.eventually(func() bool { return api.Waiting() == 1 })
	if got := h.cart("w1", cart.AddItem{ProductID: "tea", Quantity: 1, UnitPriceCents: 300}).Position; got != next {
		t.Fatalf("append at %s, want %s", got, next)
	}
	a := <-done // bounded by WaitTimeout: without the notification it ends in 504
	if a.status != http.StatusOK {
		t.Fatalf("waiting query: %d %s", a.status, a.body)
	}
	var c schema.Cart
	h.getJSON("/carts/w1", &c)
	if len(c.Items) != 1 {
		t.Fatalf("cart after the wake-up: %+v", c)
	}
}

// TestMaxWaiters: a query that would wait beyond Config.MaxWaiters gets 503
// overloaded with Retry-After at once; queries that need not wait are served.
func TestMaxWaiters(t *testing.T) {
	h := newHarness(t, redistest.Options{})
	h.startProjectors(projection.Config{})
	h.waitActive()
	pos := h.cart("m1", cart.Open{CustomerID: "ivo"}).Position
	h.getJSON("/carts/m1"+after(pos), &schema.Cart{})
	api := h.serve(queryapi.Config{WaitTimeout: 15 * time.Second, MaxWaiters: 1, FallbackPoll: time.Hour})

	next := eventstore.SeqPosition(pos.Commit + 1)
	done := h.getLater("/carts/m1" + after(next))
	h.eventually(func() bool { return api.Waiting() == 1 })
	h.wantError("/carts/m1"+after(next), http.StatusServiceUnavailable, httpjson.CodeOverloaded)
	resp, err := http.Get(h.url + "/orders/none" + after(next))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("excess waiter: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	h.getJSON("/carts/m1"+after(pos), &schema.Cart{}) // reached: no wait, served
	h.getJSON("/carts/m1", &schema.Cart{})

	h.cart("m1", cart.AddItem{ProductID: "tea", Quantity: 1, UnitPriceCents: 300})
	if a := <-done; a.status != http.StatusOK {
		t.Fatalf("the waiting query: %d %s", a.status, a.body)
	}
	h.getJSON("/carts/m1"+after(next), &schema.Cart{})
}

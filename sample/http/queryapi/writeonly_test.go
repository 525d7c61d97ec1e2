package queryapi_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/query"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/http/queryapi"
	"github.com/eventline/eventline/sample/readmodel/schema"
)

// TestOneCartOneBatch applies a cart's whole life in one batch per
// projection: additions of a product already in the cart, a quantity change,
// a removal and re-addition (which goes last), two checkouts with a reopening
// between them, and a second cart whose every unit comes back. The models
// write blindly, so each event's fields and the products script must compose
// inside one MULTI/EXEC.
func TestOneCartOneBatch(t *testing.T) {
	h := newHarness(t, redistest.Options{})
	histories := map[string][]cart.Event{}
	do := func(id string, cmd cart.Command) {
		histories[id] = append(histories[id], h.cart(id, cmd).Events...)
	}
	do("x", cart.Open{CustomerID: "una"})
	do("x", cart.AddItem{ProductID: "tea", Quantity: 2, UnitPriceCents: 100})
	do("x", cart.AddItem{ProductID: "jam", Quantity: 1, UnitPriceCents: 300})
	do("x", cart.AddItem{ProductID: "tea", Quantity: 3, UnitPriceCents: 100})
	do("x", cart.ChangeQuantity{ProductID: "jam", Quantity: 4})
	do("x", cart.RemoveItem{ProductID: "tea"})
	do("x", cart.AddItem{ProductID: "tea", Quantity: 1, UnitPriceCents: 100})
	do("x", cart.AddItem{ProductID: "jam", Quantity: 1, UnitPriceCents: 300}) // keeps its place
	do("x", cart.AddItem{ProductID: "fig", Quantity: 2, UnitPriceCents: 50})
	do("x", cart.RemoveItem{ProductID: "fig"})
	do("x", cart.CheckOut{OrderID: "o1"})
	do("x", cart.Reopen{OrderID: "o1", Reason: "refused"})
	do("x", cart.ChangeQuantity{ProductID: "jam", Quantity: 2})
	do("x", cart.CheckOut{OrderID: "o2"})
	do("y", cart.Open{CustomerID: "una"})
	do("y", cart.AddItem{ProductID: "salt", Quantity: 7, UnitPriceCents: 20})
	do("y", cart.AddItem{ProductID: "jam", Quantity: 1, UnitPriceCents: 300})
	do("y", cart.CheckOut{OrderID: "oy"})
	do("y", cart.Reopen{OrderID: "oy", Reason: "refused"})

	head, err := h.store.Head(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	h.startProjectors(projection.Config{BatchSize: int(head.Commit), FlushInterval: time.Minute})
	h.waitActive()
	for _, name := range []string{schema.Carts, schema.Products, schema.Orders} {
		if n := h.counter("eventline_projection_batches_total", name); n != 1 {
			t.Fatalf("projection %s committed %v batches, want the whole log in 1", name, n)
		}
	}
	states := map[string]cart.State{}
	for id, hist := range histories {
		states[id] = cart.Decider.Fold(hist...)
		var got schema.Cart
		h.getJSON("/carts/"+id, &got)
		if want := expectCart(id, states[id], uint64(len(hist))); !reflect.DeepEqual(got, want) {
			t.Fatalf("cart %s\n got %+v\nwant %+v", id, got, want)
		}
	}
	// Spelled out: tea was removed and added again, so it comes after jam,
	// which was added again too but never left.
	if x := states["x"]; !reflect.DeepEqual(x.Lines, []cart.Line{{ProductID: "jam", Quantity: 2, UnitPriceCents: 300},
		{ProductID: "tea", Quantity: 1, UnitPriceCents: 100}}) {
		t.Fatalf("the workload did not reach the intended cart: %+v", x.Lines)
	}
	var top queryapi.TopProducts
	h.getJSON("/products/top?limit=100", &top)
	if want := []schema.ProductUnits{units("jam", 2), units("tea", 1)}; !reflect.DeepEqual(top.Products, want) ||
		!reflect.DeepEqual(top.Products, expectTop(states, 100)) {
		t.Fatalf("top products\n got %+v\nwant %+v", top.Products, want)
	}
	checkUnitsClean(t, h, map[string]bool{"x": true, "y": false})
}

// TestReopenReturnsUnits follows the products script with a runner applying
// records as they come: a reopening takes the units of the cart's checkout
// back off the board, drops products left with none and forgets the
// checkout; checking out again counts the cart again.
func TestReopenReturnsUnits(t *testing.T) {
	h := newHarness(t, redistest.Options{})
	h.startProjectors(projection.Config{})
	h.waitActive()
	buy := func(cartID, orderID string, lines ...cart.AddItem) {
		h.cart(cartID, cart.Open{CustomerID: "vera"})
		for _, l := range lines {
			h.cart(cartID, l)
		}
		h.cart(cartID, cart.CheckOut{OrderID: orderID})
	}
	top := func(pos string) []schema.ProductUnits {
		t.Helper()
		var tp queryapi.TopProducts
		h.getJSON("/products/top?limit=100&after="+pos, &tp)
		return tp.Products
	}
	buy("c1", "o1", cart.AddItem{ProductID: "tea", Quantity: 2, UnitPriceCents: 100},
		cart.AddItem{ProductID: "milk", Quantity: 3, UnitPriceCents: 90})
	buy("c2", "o2", cart.AddItem{ProductID: "tea", Quantity: 1, UnitPriceCents: 100})
	pos := h.cart("c3", cart.Open{CustomerID: "vera"}).Position
	if got, want := top(pos.String()), []schema.ProductUnits{units("tea", 3), units("milk", 3)}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after two checkouts\n got %+v\nwant %+v", got, want)
	}
	checkUnitsClean(t, h, map[string]bool{"c1": true, "c2": true, "c3": false})

	pos = h.cart("c1", cart.Reopen{OrderID: "o1", Reason: "refused"}).Position
	if got, want := top(pos.String()), []schema.ProductUnits{units("tea", 1)}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopening c1\n got %+v\nwant %+v", got, want)
	}
	checkUnitsClean(t, h, map[string]bool{"c1": false, "c2": true})

	h.cart("c1", cart.ChangeQuantity{ProductID: "milk", Quantity: 1})
	pos = h.cart("c1", cart.CheckOut{OrderID: "o1b"}).Position
	if got, want := top(pos.String()), []schema.ProductUnits{units("tea", 3), units("milk", 1)}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after checking c1 out again\n got %+v\nwant %+v", got, want)
	}
	h.cart("c2", cart.Reopen{OrderID: "o2", Reason: "refused"})
	pos = h.cart("c1", cart.Reopen{OrderID: "o1b", Reason: "refused"}).Position
	if got := top(pos.String()); len(got) != 0 {
		t.Fatalf("every cart reopened, top products %+v", got)
	}
	checkUnitsClean(t, h, map[string]bool{"c1": false, "c2": false})
}

// checkUnitsClean checks the products model's keys directly: no product at
// zero or below on the board, and a checkout hash exactly for the carts
// marked true.
func checkUnitsClean(t *testing.T, h *harness, checkedOut map[string]bool) {
	t.Helper()
	v, err := query.Resolve(h.ctx, h.rdb, schema.Products)
	if err != nil {
		t.Fatal(err)
	}
	low, err := h.rdb.ZRangeByScore(h.ctx, v.Key(schema.PartUnits), &redis.ZRangeBy{Min: "-inf", Max: "0"}).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	if len(low) != 0 {
		t.Fatalf("products with no units left on the board: %v", low)
	}
	for id, want := range checkedOut {
		n, err := h.rdb.Exists(h.ctx, v.Key(schema.PartCheckout, id)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := n == 1; got != want {
			t.Fatalf("cart %s: checkout lines kept %v, want %v", id, got, want)
		}
	}
}

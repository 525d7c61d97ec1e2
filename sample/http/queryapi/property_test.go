package queryapi_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/domain/order"
	"github.com/eventline/eventline/sample/http/queryapi"
	"github.com/eventline/eventline/sample/readmodel/schema"
)

// TestReadModelMatchesDeciders drives random command sequences through the
// deciders (carts, and the saga's order outcomes with the cart reopening),
// with runners applying batches of varying size meanwhile, and checks that
// every read model equals what the deciders' states imply: each cart as
// cart.Decider.Fold of its events, each order as its checkout and outcome,
// each customer's carts and orders, and the leaderboard.
func TestReadModelMatchesDeciders(t *testing.T) {
	for seed, c := range []struct {
		batch int
		late  bool // start the runners after the workload: catch-up in large batches
	}{{1, false}, {7, false}, {1000, false}, {1000, true}} {
		t.Run(fmt.Sprintf("seed%d_batch%d_late%v", seed, c.batch, c.late), func(t *testing.T) {
			checkRandomWorkload(t, uint64(seed), c.batch, c.late)
		})
	}
}

func checkRandomWorkload(t *testing.T, seed uint64, batchSize int, late bool) {
	h := newHarness(t, redistest.Options{})
	if !late {
		h.startProjectors(projection.Config{BatchSize: batchSize})
	}
	rng := rand.New(rand.NewPCG(seed, 0xca27))

	const carts, steps = 24, 600
	products := []string{"tea", "milk", "jam", "bread", "fig", "cake", "salt"}
	histories := map[string][]cart.Event{}
	orders := map[string]schema.Order{}
	customerCarts := map[string][]string{}
	customerOrders := map[string][]string{}
	reached := map[string]int{}
	refused := 0

	for step := range steps {
		id := fmt.Sprintf("k%d", rng.IntN(carts))
		s := cart.Decider.Fold(histories[id]...)
		var cmd cart.Command
		switch {
		case s.Status == cart.StatusNone:
			cmd = cart.Open{CustomerID: fmt.Sprintf("cu%d", rng.IntN(5))}
		case s.Status == cart.StatusCheckedOut:
			// The saga's turn: leave pending, confirm, or reject and reopen.
			o := orders[s.OrderID]
			if o.Status == schema.OrderConfirmed {
				continue
			}
			switch rng.IntN(3) {
			case 0:
				continue
			case 1:
				h.order(o.OrderID, placeOf(o))
				h.order(o.OrderID, order.Confirm{})
				o.Status = schema.OrderConfirmed
				orders[o.OrderID] = o
				reached["confirmed"]++
				continue
			}
			h.order(o.OrderID, placeOf(o))
			reason := fmt.Sprintf("refused at step %d", step)
			h.order(o.OrderID, order.Reject{Reason: reason})
			o.Status, o.Reason = schema.OrderRejected, reason
			orders[o.OrderID] = o
			cmd = cart.Reopen{OrderID: o.OrderID, Reason: reason}
		default:
			p := products[rng.IntN(len(products))]
			switch r := rng.IntN(10); {
			case r < 5:
				cmd = cart.AddItem{ProductID: p, Quantity: 1 + rng.IntN(5), UnitPriceCents: int64(100 + len(p))}
			case r < 7:
				cmd = cart.ChangeQuantity{ProductID: p, Quantity: 1 + rng.IntN(9)}
			case r < 9:
				cmd = cart.RemoveItem{ProductID: p}
			default:
				cmd = cart.CheckOut{OrderID: fmt.Sprintf("o%d", step)}
			}
		}
		res, err := h.carts.Handle(h.ctx, id, cmd)
		if err != nil {
			if !errors.Is(err, cart.ErrRuleViolated) || !errors.Is(err, command.ErrRejected) {
				t.Fatalf("step %d: cart %s %T%+v: %v", step, id, cmd, cmd, err)
			}
			refused++
			continue
		}
		histories[id] = append(histories[id], res.Events...)
		for _, e := range res.Events {
			reached[fmt.Sprintf("%T", e)]++
			switch e := e.(type) {
			case cart.Opened:
				customerCarts[e.CustomerID] = append(customerCarts[e.CustomerID], id)
			case cart.CheckedOut:
				customerOrders[e.CustomerID] = append(customerOrders[e.CustomerID], e.OrderID)
				o := schema.Order{OrderID: e.OrderID, CartID: id, CustomerID: e.CustomerID,
					Status: schema.OrderPending, TotalCents: e.TotalCents, Items: []schema.Line{}}
				for _, l := range e.Items {
					o.Items = append(o.Items, schema.Line(l))
				}
				orders[e.OrderID] = o
			}
		}
	}
	for _, k := range []string{"cart.Opened", "cart.ItemAdded", "cart.QuantityChanged", "cart.ItemRemoved",
		"cart.CheckedOut", "cart.Reopened", "confirmed"} {
		if reached[k] == 0 {
			t.Fatalf("the workload never reached %s: %v", k, reached)
		}
	}
	t.Logf("events by kind %v, %d commands refused", reached, refused)

	head, err := h.store.Head(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if late {
		h.startProjectors(projection.Config{BatchSize: batchSize})
	}
	h.waitActive()
	at := after(head)
	states := map[string]cart.State{}
	for id, hist := range histories {
		states[id] = cart.Decider.Fold(hist...)
		var got schema.Cart
		h.getJSON("/carts/"+id+at, &got)
		if want := expectCart(id, states[id], uint64(len(hist))); !reflect.DeepEqual(got, want) {
			t.Fatalf("cart %s\n got %+v\nwant %+v", id, got, want)
		}
	}
	for id, want := range orders {
		var got schema.Order
		h.getJSON("/orders/"+id+at, &got)
		if got.PlacedAt.IsZero() {
			t.Fatalf("order %s has no placed_at", id)
		}
		want.PlacedAt = got.PlacedAt
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("order %s\n got %+v\nwant %+v", id, got, want)
		}
	}
	for cu, cs := range customerCarts {
		var got schema.Customer
		h.getJSON("/customers/"+cu+"/carts"+at, &got)
		want := schema.Customer{CustomerID: cu, Carts: cs, Orders: customerOrders[cu]}
		if want.Orders == nil {
			want.Orders = []string{}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("customer %s\n got %+v\nwant %+v", cu, got, want)
		}
	}
	var top queryapi.TopProducts
	h.getJSON("/products/top?limit=100&"+at[1:], &top)
	if want := expectTop(states, 100); !reflect.DeepEqual(top.Products, want) {
		t.Fatalf("top products\n got %+v\nwant %+v", top.Products, want)
	}
	if !slices.ContainsFunc(top.Products, func(p schema.ProductUnits) bool { return p.Units > 0 }) {
		t.Fatalf("the workload left no checked-out units: %+v", top.Products)
	}
}

func placeOf(o schema.Order) order.Place {
	p := order.Place{OrderID: o.OrderID, CartID: o.CartID, CustomerID: o.CustomerID, TotalCents: o.TotalCents}
	for _, l := range o.Items {
		p.Items = append(p.Items, order.Line(l))
	}
	return p
}

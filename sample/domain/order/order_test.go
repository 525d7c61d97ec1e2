package order_test

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/eventline/eventline/command/commandtest"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/sample/domain/order"
)

var (
	items  = []order.Line{{ProductID: "apple", Quantity: 2, UnitPriceCents: 150}, {ProductID: "pear", Quantity: 1, UnitPriceCents: 99}}
	place  = order.Place{OrderID: "o-1", CartID: "c-1", CustomerID: "ann", Items: items, TotalCents: 399}
	placed = order.Placed{OrderID: "o-1", CartID: "c-1", CustomerID: "ann", Items: items, TotalCents: 399}
	reject = order.Rejected{Reason: "credit limit exceeded"}
)

// with returns place changed by f, without sharing its items.
func with(f func(*order.Place)) order.Place {
	p := place
	p.Items = slices.Clone(items)
	f(&p)
	return p
}

func TestDecide(t *testing.T) {
	cases := []struct {
		name  string
		given []order.Event
		when  order.Command
		then  []order.Event
		err   error
	}{
		{name: "place", when: place, then: []order.Event{placed}},
		{name: "the same place again decides nothing", given: []order.Event{placed}, when: place},
		{name: "the same place after confirmation decides nothing", given: []order.Event{placed, order.Confirmed{}}, when: place},
		{name: "refuses another place", given: []order.Event{placed}, when: with(func(p *order.Place) { p.CartID = "c-2" }), err: order.ErrAlreadyPlaced},
		{name: "refuses a place with other items", given: []order.Event{placed}, when: with(func(p *order.Place) { p.Items[0].Quantity = 3; p.TotalCents = 549 }), err: order.ErrAlreadyPlaced},
		{name: "refuses an empty order id", when: with(func(p *order.Place) { p.OrderID = "" }), err: order.ErrInvalidID},
		{name: "refuses a malformed cart id", when: with(func(p *order.Place) { p.CartID = "c/1" }), err: order.ErrInvalidID},
		{name: "refuses an overlong customer id", when: with(func(p *order.Place) { p.CustomerID = strings.Repeat("a", 129) }), err: order.ErrInvalidID},
		{name: "refuses no items", when: with(func(p *order.Place) { p.Items = nil; p.TotalCents = 0 }), err: order.ErrInvalidItems},
		{name: "refuses 101 items", when: with(func(p *order.Place) {
			p.Items, p.TotalCents = nil, 101
			for i := range 101 {
				p.Items = append(p.Items, order.Line{ProductID: "p" + strings.Repeat("x", i), Quantity: 1, UnitPriceCents: 1})
			}
		}), err: order.ErrInvalidItems},
		{name: "refuses quantity 0", when: with(func(p *order.Place) { p.Items[1].Quantity = 0; p.TotalCents = 300 }), err: order.ErrInvalidItems},
		{name: "refuses quantity 1000", when: with(func(p *order.Place) { p.Items[1].Quantity = 1000; p.TotalCents = 300 + 99000 }), err: order.ErrInvalidItems},
		{name: "refuses price 0", when: with(func(p *order.Place) { p.Items[1].UnitPriceCents = 0; p.TotalCents = 300 }), err: order.ErrInvalidItems},
		{name: "refuses a price over the maximum", when: with(func(p *order.Place) {
			p.Items[1].UnitPriceCents = order.MaxUnitPriceCents + 1
			p.TotalCents = 300 + order.MaxUnitPriceCents + 1
		}), err: order.ErrInvalidItems},
		{name: "refuses a malformed product id", when: with(func(p *order.Place) { p.Items[0].ProductID = "" }), err: order.ErrInvalidItems},
		{name: "refuses a product twice", when: with(func(p *order.Place) { p.Items[1] = p.Items[0]; p.TotalCents = 600 }), err: order.ErrInvalidItems},
		{name: "refuses a wrong total", when: with(func(p *order.Place) { p.TotalCents = 400 }), err: order.ErrTotalMismatch},
		{name: "confirm", given: []order.Event{placed}, when: order.Confirm{}, then: []order.Event{order.Confirmed{}}},
		{name: "confirm twice decides nothing", given: []order.Event{placed, order.Confirmed{}}, when: order.Confirm{}},
		{name: "refuses confirming a rejected order", given: []order.Event{placed, reject}, when: order.Confirm{}, err: order.ErrNotPending},
		{name: "refuses confirming an order never placed", when: order.Confirm{}, err: order.ErrNotPlaced},
		{name: "reject", given: []order.Event{placed}, when: order.Reject{Reason: "credit limit exceeded"}, then: []order.Event{reject}},
		{name: "reject twice decides nothing", given: []order.Event{placed, reject}, when: order.Reject{Reason: "again"}},
		{name: "refuses rejecting a confirmed order", given: []order.Event{placed, order.Confirmed{}}, when: order.Reject{Reason: "late"}, err: order.ErrNotPending},
		{name: "refuses rejecting an order never placed", when: order.Reject{Reason: "x"}, err: order.ErrNotPlaced},
		{name: "refuses an empty reason", given: []order.Event{placed}, when: order.Reject{}, err: order.ErrInvalidReason},
		{name: "refuses an overlong reason", given: []order.Event{placed}, when: order.Reject{Reason: strings.Repeat("r", order.MaxReasonLen+1)}, err: order.ErrInvalidReason},
		{name: "refuses a nil command on a new order", when: nil, err: order.ErrNotPlaced},
		{name: "refuses a nil command", given: []order.Event{placed}, when: nil, err: order.ErrUnknownCommand},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := commandtest.For(t, order.Decider).Given(c.given...).When(c.when)
			if c.err == nil {
				s.Then(c.then...)
				return
			}
			s.ThenError(c.err)
			if _, err := order.Decide(order.Decider.Fold(c.given...), c.when); !errors.Is(err, order.ErrRuleViolated) {
				t.Errorf("error %v does not match ErrRuleViolated", err)
			}
		})
	}
}

func TestStates(t *testing.T) {
	pending := order.State{Status: order.StatusPending, OrderID: "o-1", CartID: "c-1", CustomerID: "ann", Items: items, TotalCents: 399}
	commandtest.For(t, order.Decider).When(place).ThenState(pending)
	confirmed := pending
	confirmed.Status = order.StatusConfirmed
	commandtest.For(t, order.Decider).Given(placed).When(order.Confirm{}).ThenState(confirmed)
	rejected := pending
	rejected.Status, rejected.Reason = order.StatusRejected, "credit limit exceeded"
	commandtest.For(t, order.Decider).Given(placed).When(order.Reject{Reason: "credit limit exceeded"}).ThenState(rejected)
}

// TestPlacedOwnsItsItems checks that neither the decided event nor the state
// shares the command's slice, so a caller reusing it changes nothing.
func TestPlacedOwnsItsItems(t *testing.T) {
	cmd := with(func(*order.Place) {})
	events, err := order.Decide(order.State{}, cmd)
	if err != nil {
		t.Fatal(err)
	}
	s := order.Evolve(order.State{}, events[0])
	cmd.Items[0].Quantity = 99
	if events[0].(order.Placed).Items[0].Quantity != 2 || s.Items[0].Quantity != 2 {
		t.Errorf("the event or state shares the command's items: %+v, %+v", events[0], s)
	}
}

func TestRegisterRoundTrip(t *testing.T) {
	reg := eventstore.NewRegistry()
	order.RegisterEvents(reg)
	cases := []struct {
		event order.Event
		typ   string
		json  string
	}{
		{placed, "order.placed", `{"order_id":"o-1","cart_id":"c-1","customer_id":"ann","items":[{"product_id":"apple","quantity":2,"unit_price_cents":150},{"product_id":"pear","quantity":1,"unit_price_cents":99}],"total_cents":399}`},
		{order.Confirmed{}, "order.confirmed", `{}`},
		{reject, "order.rejected", `{"reason":"credit limit exceeded"}`},
	}
	for _, c := range cases {
		ev, err := reg.Encode(c.event)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != c.typ || string(ev.Data) != c.json {
			t.Errorf("Encode(%T) = %s %s, want %s %s", c.event, ev.Type, ev.Data, c.typ, c.json)
		}
		back, err := reg.Decode(eventstore.Record{Event: ev, StreamID: "order-o-1", Version: 1})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, c.event) {
			t.Errorf("Decode(%s) = %#v, want %#v", c.typ, back, c.event)
		}
	}
	if got := reg.Types(); !slices.Equal(got, []string{"order.confirmed", "order.placed", "order.rejected"}) {
		t.Errorf("registered %v", got)
	}
}

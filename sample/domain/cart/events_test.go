package cart_test

import (
	"reflect"
	"slices"
	"testing"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/sample/domain/cart"
)

// TestRegisterRoundTrip checks every event's type name and JSON shape, and
// that decoding returns the value the handler's type switch expects.
func TestRegisterRoundTrip(t *testing.T) {
	reg := eventstore.NewRegistry()
	cart.RegisterEvents(reg)
	cases := []struct {
		event cart.Event
		typ   string
		json  string
	}{
		{cart.Opened{CustomerID: "ann"}, "cart.opened", `{"customer_id":"ann"}`},
		{cart.ItemAdded{ProductID: "apple", Quantity: 2, UnitPriceCents: 150}, "cart.item_added", `{"product_id":"apple","quantity":2,"unit_price_cents":150}`},
		{cart.QuantityChanged{ProductID: "apple", Quantity: 3}, "cart.quantity_changed", `{"product_id":"apple","quantity":3}`},
		{cart.ItemRemoved{ProductID: "apple"}, "cart.item_removed", `{"product_id":"apple"}`},
		{checked, "cart.checked_out", `{"order_id":"o-1","customer_id":"ann","items":[{"product_id":"apple","quantity":2,"unit_price_cents":150},{"product_id":"pear","quantity":1,"unit_price_cents":99}],"total_cents":399}`},
		{cart.Reopened{OrderID: "o-1", Reason: "credit limit exceeded"}, "cart.reopened", `{"order_id":"o-1","reason":"credit limit exceeded"}`},
	}
	var names []string
	for _, c := range cases {
		ev, err := reg.Encode(c.event)
		if err != nil {
			t.Fatalf("Encode(%T): %v", c.event, err)
		}
		if ev.Type != c.typ || string(ev.Data) != c.json {
			t.Errorf("Encode(%T) = %s %s, want %s %s", c.event, ev.Type, ev.Data, c.typ, c.json)
		}
		back, err := reg.Decode(eventstore.Record{Event: ev, StreamID: "cart-1", Version: 1})
		if err != nil {
			t.Fatalf("Decode(%s): %v", c.typ, err)
		}
		if !reflect.DeepEqual(back, c.event) {
			t.Errorf("Decode(%s) = %#v, want %#v", c.typ, back, c.event)
		}
		if _, ok := back.(cart.Event); !ok {
			t.Errorf("Decode(%s) = %T, which is not a cart.Event", c.typ, back)
		}
		names = append(names, c.typ)
	}
	slices.Sort(names)
	if got := reg.Types(); !slices.Equal(got, names) {
		t.Errorf("Register registered %v, want exactly %v", got, names)
	}
}

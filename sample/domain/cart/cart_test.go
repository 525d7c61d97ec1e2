package cart_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/eventline/eventline/command/commandtest"
	"github.com/eventline/eventline/sample/domain/cart"
)

// Shorthands for the tables.
var (
	opened  = cart.Opened{CustomerID: "ann"}
	apple2  = cart.ItemAdded{ProductID: "apple", Quantity: 2, UnitPriceCents: 150}
	pear1   = cart.ItemAdded{ProductID: "pear", Quantity: 1, UnitPriceCents: 99}
	checked = cart.CheckedOut{
		OrderID:    "o-1",
		CustomerID: "ann",
		Items:      []cart.Line{{ProductID: "apple", Quantity: 2, UnitPriceCents: 150}, {ProductID: "pear", Quantity: 1, UnitPriceCents: 99}},
		TotalCents: 399,
	}
	reopened = cart.Reopened{OrderID: "o-1", Reason: "credit limit exceeded"}
)

// fullCart returns the events of an open cart with n lines of one unit each.
func fullCart(n int) []cart.Event {
	events := []cart.Event{opened}
	for i := range n {
		events = append(events, cart.ItemAdded{ProductID: "p" + itoa(i), Quantity: 1, UnitPriceCents: 1})
	}
	return events
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

type scenario struct {
	name  string
	given []cart.Event
	when  cart.Command
	then  []cart.Event // when err is nil; nil means "no events"
	err   error
}

func run(t *testing.T, cases []scenario) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := commandtest.For(t, cart.Decider).Given(c.given...).When(c.when)
			if c.err != nil {
				s.ThenError(c.err)
				_, err := cart.Decide(cart.Decider.Fold(c.given...), c.when)
				if !errors.Is(err, cart.ErrRuleViolated) {
					t.Errorf("error %v does not match ErrRuleViolated", err)
				}
				return
			}
			s.Then(c.then...)
		})
	}
}

func TestOpen(t *testing.T) {
	run(t, []scenario{
		{name: "opens a new cart", when: cart.Open{CustomerID: "ann"}, then: []cart.Event{opened}},
		{name: "refuses opening twice", given: []cart.Event{opened}, when: cart.Open{CustomerID: "ann"}, err: cart.ErrAlreadyOpen},
		{name: "refuses opening a checked-out cart", given: []cart.Event{opened, apple2, pear1, checked}, when: cart.Open{CustomerID: "bob"}, err: cart.ErrAlreadyOpen},
		{name: "refuses an empty customer id", when: cart.Open{}, err: cart.ErrInvalidCustomerID},
		{name: "refuses a customer id with a slash", when: cart.Open{CustomerID: "a/b"}, err: cart.ErrInvalidCustomerID},
		{name: "refuses a customer id over 128 bytes", when: cart.Open{CustomerID: strings.Repeat("c", 129)}, err: cart.ErrInvalidCustomerID},
		{name: "accepts a customer id of 128 bytes", when: cart.Open{CustomerID: strings.Repeat("c", 128)}, then: []cart.Event{cart.Opened{CustomerID: strings.Repeat("c", 128)}}},
	})
}

func TestUnopenedCartRefusesEverything(t *testing.T) {
	cmds := []cart.Command{
		cart.AddItem{ProductID: "apple", Quantity: 1, UnitPriceCents: 1},
		cart.ChangeQuantity{ProductID: "apple", Quantity: 1},
		cart.RemoveItem{ProductID: "apple"},
		cart.CheckOut{OrderID: "o-1"},
		cart.Reopen{OrderID: "o-1"},
		nil,
	}
	var cases []scenario
	for _, c := range cmds {
		cases = append(cases, scenario{name: typeName(c), when: c, err: cart.ErrCartNotOpen})
	}
	run(t, cases)
}

func typeName(c cart.Command) string {
	if c == nil {
		return "nil"
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", c), "cart.")
}

func TestAddItem(t *testing.T) {
	run(t, []scenario{
		{name: "adds a new line", given: []cart.Event{opened}, when: cart.AddItem{ProductID: "apple", Quantity: 2, UnitPriceCents: 150}, then: []cart.Event{apple2}},
		{name: "adds to an existing line", given: []cart.Event{opened, apple2}, when: cart.AddItem{ProductID: "apple", Quantity: 3, UnitPriceCents: 150},
			then: []cart.Event{cart.ItemAdded{ProductID: "apple", Quantity: 3, UnitPriceCents: 150}}},
		{name: "adds up to exactly 999", given: []cart.Event{opened, apple2}, when: cart.AddItem{ProductID: "apple", Quantity: 997, UnitPriceCents: 150},
			then: []cart.Event{cart.ItemAdded{ProductID: "apple", Quantity: 997, UnitPriceCents: 150}}},
		{name: "refuses adding beyond 999 to a line", given: []cart.Event{opened, apple2}, when: cart.AddItem{ProductID: "apple", Quantity: 998, UnitPriceCents: 150}, err: cart.ErrQuantityRange},
		{name: "refuses another price for a present product", given: []cart.Event{opened, apple2}, when: cart.AddItem{ProductID: "apple", Quantity: 1, UnitPriceCents: 151}, err: cart.ErrPriceMismatch},
		{name: "refuses quantity 0", given: []cart.Event{opened}, when: cart.AddItem{ProductID: "apple", Quantity: 0, UnitPriceCents: 1}, err: cart.ErrQuantityRange},
		{name: "refuses a negative quantity", given: []cart.Event{opened}, when: cart.AddItem{ProductID: "apple", Quantity: -1, UnitPriceCents: 1}, err: cart.ErrQuantityRange},
		{name: "refuses quantity 1000", given: []cart.Event{opened}, when: cart.AddItem{ProductID: "apple", Quantity: 1000, UnitPriceCents: 1}, err: cart.ErrQuantityRange},
		{name: "accepts quantity 999", given: []cart.Event{opened}, when: cart.AddItem{ProductID: "apple", Quantity: 999, UnitPriceCents: 1},
			then: []cart.Event{cart.ItemAdded{ProductID: "apple", Quantity: 999, UnitPriceCents: 1}}},
		{name: "refuses price 0", given: []cart.Event{opened}, when: cart.AddItem{ProductID: "apple", Quantity: 1, UnitPriceCents: 0}, err: cart.ErrInvalidPrice},
		{name: "refuses a negative price", given: []cart.Event{opened}, when: cart.AddItem{ProductID: "apple", Quantity: 1, UnitPriceCents: -5}, err: cart.ErrInvalidPrice},
		{name: "refuses a price over the maximum", given: []cart.Event{opened}, when: cart.AddItem{ProductID: "apple", Quantity: 1, UnitPriceCents: cart.MaxUnitPriceCents + 1}, err: cart.ErrInvalidPrice},
		{name: "accepts the maximum price", given: []cart.Event{opened}, when: cart.AddItem{ProductID: "apple", Quantity: 1, UnitPriceCents: cart.MaxUnitPriceCents},
			then: []cart.Event{cart.ItemAdded{ProductID: "apple", Quantity: 1, UnitPriceCents: cart.MaxUnitPriceCents}}},
		{name: "refuses an empty product id", given: []cart.Event{opened}, when: cart.AddItem{Quantity: 1, UnitPriceCents: 1}, err: cart.ErrInvalidProductID},
		{name: "refuses a product id of 65 bytes", given: []cart.Event{opened}, when: cart.AddItem{ProductID: strings.Repeat("p", 65), Quantity: 1, UnitPriceCents: 1}, err: cart.ErrInvalidProductID},
		{name: "accepts a product id of 64 bytes of every allowed kind", given: []cart.Event{opened},
			when: cart.AddItem{ProductID: "AZaz09._~-" + strings.Repeat("p", 54), Quantity: 1, UnitPriceCents: 1},
			then: []cart.Event{cart.ItemAdded{ProductID: "AZaz09._~-" + strings.Repeat("p", 54), Quantity: 1, UnitPriceCents: 1}}},
		{name: "refuses a product id with a space", given: []cart.Event{opened}, when: cart.AddItem{ProductID: "a b", Quantity: 1, UnitPriceCents: 1}, err: cart.ErrInvalidProductID},
		{name: "refuses a product id with non-ASCII", given: []cart.Event{opened}, when: cart.AddItem{ProductID: "café", Quantity: 1, UnitPriceCents: 1}, err: cart.ErrInvalidProductID},
		{name: "refuses a 101st line", given: fullCart(100), when: cart.AddItem{ProductID: "one-more", Quantity: 1, UnitPriceCents: 1}, err: cart.ErrTooManyLines},
		{name: "adds to a line of a full cart", given: fullCart(100), when: cart.AddItem{ProductID: "p7", Quantity: 1, UnitPriceCents: 1},
			then: []cart.Event{cart.ItemAdded{ProductID: "p7", Quantity: 1, UnitPriceCents: 1}}},
		{name: "accepts a 100th line", given: fullCart(99), when: cart.AddItem{ProductID: "last", Quantity: 1, UnitPriceCents: 1},
			then: []cart.Event{cart.ItemAdded{ProductID: "last", Quantity: 1, UnitPriceCents: 1}}},
		{name: "refuses after checkout, before checking arguments", given: []cart.Event{opened, apple2, checked}, when: cart.AddItem{ProductID: "", Quantity: 0}, err: cart.ErrCheckedOut},
		{name: "adds after a reopen", given: []cart.Event{opened, apple2, pear1, checked, reopened}, when: cart.AddItem{ProductID: "apple", Quantity: 1, UnitPriceCents: 150},
			then: []cart.Event{cart.ItemAdded{ProductID: "apple", Quantity: 1, UnitPriceCents: 150}}},
	})
}

func TestChangeQuantity(t *testing.T) {
	run(t, []scenario{
		{name: "changes a line", given: []cart.Event{opened, apple2}, when: cart.ChangeQuantity{ProductID: "apple", Quantity: 5},
			then: []cart.Event{cart.QuantityChanged{ProductID: "apple", Quantity: 5}}},
		{name: "the same quantity decides nothing", given: []cart.Event{opened, apple2}, when: cart.ChangeQuantity{ProductID: "apple", Quantity: 2}, then: nil},
		{name: "refuses 0", given: []cart.Event{opened, apple2}, when: cart.ChangeQuantity{ProductID: "apple", Quantity: 0}, err: cart.ErrQuantityRange},
		{name: "refuses 1000", given: []cart.Event{opened, apple2}, when: cart.ChangeQuantity{ProductID: "apple", Quantity: 1000}, err: cart.ErrQuantityRange},
		{name: "accepts 999", given: []cart.Event{opened, apple2}, when: cart.ChangeQuantity{ProductID: "apple", Quantity: 999},
			then: []cart.Event{cart.QuantityChanged{ProductID: "apple", Quantity: 999}}},
		{name: "refuses a product not in the cart", given: []cart.Event{opened, apple2}, when: cart.ChangeQuantity{ProductID: "pear", Quantity: 1}, err: cart.ErrItemNotFound},
		{name: "refuses a removed product", given: []cart.Event{opened, apple2, cart.ItemRemoved{ProductID: "apple"}}, when: cart.ChangeQuantity{ProductID: "apple", Quantity: 1}, err: cart.ErrItemNotFound},
		{name: "refuses a malformed product id", given: []cart.Event{opened, apple2}, when: cart.ChangeQuantity{ProductID: "a?b", Quantity: 1}, err: cart.ErrInvalidProductID},
		{name: "refuses after checkout", given: []cart.Event{opened, apple2, pear1, checked}, when: cart.ChangeQuantity{ProductID: "apple", Quantity: 3}, err: cart.ErrCheckedOut},
	})
}

func TestRemoveItem(t *testing.T) {
	run(t, []scenario{
		{name: "removes a line", given: []cart.Event{opened, apple2, pear1}, when: cart.RemoveItem{ProductID: "apple"}, then: []cart.Event{cart.ItemRemoved{ProductID: "apple"}}},
		{name: "refuses a product not in the cart", given: []cart.Event{opened, apple2}, when: cart.RemoveItem{ProductID: "pear"}, err: cart.ErrItemNotFound},
		{name: "refuses removing twice", given: []cart.Event{opened, apple2, cart.ItemRemoved{ProductID: "apple"}}, when: cart.RemoveItem{ProductID: "apple"}, err: cart.ErrItemNotFound},
		{name: "refuses a malformed product id", given: []cart.Event{opened}, when: cart.RemoveItem{ProductID: ""}, err: cart.ErrInvalidProductID},
		{name: "refuses after checkout", given: []cart.Event{opened, apple2, pear1, checked}, when: cart.RemoveItem{ProductID: "apple"}, err: cart.ErrCheckedOut},
	})
}

func TestCheckOut(t *testing.T) {
	run(t, []scenario{
		{name: "checks out with everything the order needs", given: []cart.Event{opened, apple2, pear1}, when: cart.CheckOut{OrderID: "o-1"}, then: []cart.Event{checked}},
		{name: "the total follows changes and removals",
			given: []cart.Event{opened, apple2, pear1, cart.QuantityChanged{ProductID: "apple", Quantity: 10}, cart.ItemRemoved{ProductID: "pear"},
				cart.ItemAdded{ProductID: "apple", Quantity: 1, UnitPriceCents: 150}},
			when: cart.CheckOut{OrderID: "o-2"},
			then: []cart.Event{cart.CheckedOut{OrderID: "o-2", CustomerID: "ann", Items: []cart.Line{{ProductID: "apple", Quantity: 11, UnitPriceCents: 150}}, TotalCents: 1650}}},
		{name: "refuses an empty cart", given: []cart.Event{opened}, when: cart.CheckOut{OrderID: "o-1"}, err: cart.ErrEmptyCart},
		{name: "refuses a cart emptied by removal", given: []cart.Event{opened, apple2, cart.ItemRemoved{ProductID: "apple"}}, when: cart.CheckOut{OrderID: "o-1"}, err: cart.ErrEmptyCart},
		{name: "refuses an empty order id", given: []cart.Event{opened, apple2}, when: cart.CheckOut{}, err: cart.ErrInvalidOrderID},
		{name: "refuses a malformed order id", given: []cart.Event{opened, apple2}, when: cart.CheckOut{OrderID: "o 1"}, err: cart.ErrInvalidOrderID},
		{name: "the same order again decides nothing", given: []cart.Event{opened, apple2, pear1, checked}, when: cart.CheckOut{OrderID: "o-1"}, then: nil},
		{name: "refuses another order after checkout", given: []cart.Event{opened, apple2, pear1, checked}, when: cart.CheckOut{OrderID: "o-2"}, err: cart.ErrCheckedOut},
		{name: "checks out again after a reopen", given: []cart.Event{opened, apple2, pear1, checked, reopened}, when: cart.CheckOut{OrderID: "o-2"},
			then: []cart.Event{cart.CheckedOut{OrderID: "o-2", CustomerID: "ann", Items: checked.Items, TotalCents: 399}}},
	})
}

func TestReopen(t *testing.T) {
	run(t, []scenario{
		{name: "reopens for the checked-out order", given: []cart.Event{opened, apple2, pear1, checked}, when: cart.Reopen{OrderID: "o-1", Reason: "credit limit exceeded"}, then: []cart.Event{reopened}},
		{name: "a repeated reopen decides nothing", given: []cart.Event{opened, apple2, pear1, checked, reopened}, when: cart.Reopen{OrderID: "o-1"}, then: nil},
		{name: "a late reopen for an older order decides nothing",
			given: []cart.Event{opened, apple2, pear1, checked, reopened, cart.CheckedOut{OrderID: "o-2", CustomerID: "ann", Items: checked.Items, TotalCents: 399}},
			when:  cart.Reopen{OrderID: "o-1"}, then: nil},
		{name: "refuses another order", given: []cart.Event{opened, apple2, pear1, checked}, when: cart.Reopen{OrderID: "o-9"}, err: cart.ErrNotCheckedOut},
		{name: "refuses an open cart", given: []cart.Event{opened, apple2}, when: cart.Reopen{OrderID: "o-1"}, err: cart.ErrNotCheckedOut},
		{name: "refuses an overlong reason", given: []cart.Event{opened, apple2, pear1, checked}, when: cart.Reopen{OrderID: "o-1", Reason: strings.Repeat("r", cart.MaxReasonLen+1)}, err: cart.ErrInvalidReason},
	})
}

func TestStates(t *testing.T) {
	lines := checked.Items
	t.Run("reopen keeps the items", func(t *testing.T) {
		commandtest.For(t, cart.Decider).Given(opened, apple2, pear1, checked).When(cart.Reopen{OrderID: "o-1"}).
			ThenState(cart.State{Status: cart.StatusOpen, CustomerID: "ann", Lines: lines, TotalCents: 399, ReopenedOrders: []string{"o-1"}})
	})
	t.Run("checkout records the order", func(t *testing.T) {
		commandtest.For(t, cart.Decider).Given(opened, apple2, pear1).When(cart.CheckOut{OrderID: "o-1"}).
			ThenState(cart.State{Status: cart.StatusCheckedOut, CustomerID: "ann", Lines: lines, TotalCents: 399, OrderID: "o-1"})
	})
	t.Run("removal keeps the order of the other lines", func(t *testing.T) {
		commandtest.For(t, cart.Decider).Given(opened, apple2, pear1, cart.ItemAdded{ProductID: "fig", Quantity: 3, UnitPriceCents: 10}).
			When(cart.RemoveItem{ProductID: "pear"}).
			ThenState(cart.State{Status: cart.StatusOpen, CustomerID: "ann", TotalCents: 330,
				Lines: []cart.Line{{ProductID: "apple", Quantity: 2, UnitPriceCents: 150}, {ProductID: "fig", Quantity: 3, UnitPriceCents: 10}}})
	})
}

// TestEvolveLeavesOlderStates checks that a state stays valid after later
// events were applied to it: Evolve copies before it changes a slice.
func TestEvolveLeavesOlderStates(t *testing.T) {
	s := cart.Decider.Fold(opened, apple2, pear1)
	snapshot := cart.Decider.Fold(opened, apple2, pear1)
	for _, e := range []cart.Event{
		cart.ItemAdded{ProductID: "apple", Quantity: 1, UnitPriceCents: 150},
		cart.QuantityChanged{ProductID: "pear", Quantity: 7},
		cart.ItemRemoved{ProductID: "apple"},
		checked, reopened,
	} {
		_ = cart.Evolve(s, e)
	}
	if !reflect.DeepEqual(s, snapshot) {
		t.Errorf("Evolve changed the state it was given: %+v, want %+v", s, snapshot)
	}
}

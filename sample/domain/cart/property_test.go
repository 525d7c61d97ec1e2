package cart_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"testing"

	"github.com/eventline/eventline/sample/domain/cart"
)

// TestRandomCommandsKeepInvariants runs random command sequences, biased to
// the edges of every rule, and checks after each decision that the state obeys
// the cart's invariants, that a refused command decided no events, and that
// Decide left the state it was given unchanged.
func TestRandomCommandsKeepInvariants(t *testing.T) {
	// 100 sequences reach every edge below a hundred times or more; more
	// add little but time to the default run. EVENTLINE_TEST_LONG=1 runs
	// ten times as many, for a deliberate long run.
	sequences, steps := 100, 400
	if os.Getenv("EVENTLINE_TEST_LONG") != "" {
		sequences = 1000
	}
	// reached counts the edges the sequences reached, so that a generator that
	// stopped reaching them fails the test instead of passing vacuously.
	reached := map[string]int{}
	for seed := range uint64(sequences) {
		rng := rand.New(rand.NewPCG(seed, 0x5eed))
		var history []cart.Event
		s := cart.Decider.Initial()
		accepted := 0
		for step := range steps {
			cmd := randomCommand(rng, s, seed%3 == 0)
			before := s
			before.Lines = slices.Clone(s.Lines)
			before.ReopenedOrders = slices.Clone(s.ReopenedOrders)
			events, err := cart.Decide(s, cmd)
			if !reflect.DeepEqual(s, before) {
				t.Fatalf("seed %d step %d: Decide(%T%+v) mutated the state", seed, step, cmd, cmd)
			}
			if err != nil {
				switch {
				case errors.Is(err, cart.ErrTooManyLines):
					reached["too many lines"]++
				case errors.Is(err, cart.ErrQuantityRange):
					reached["quantity range"]++
				}
				if len(events) != 0 {
					t.Fatalf("seed %d step %d: %T%+v refused with %v but decided %v", seed, step, cmd, cmd, err, events)
				}
				continue
			}
			accepted++
			if len(events) > 0 {
				reached[fmt.Sprintf("%T", events[0])]++
			}
			for _, e := range events {
				s = cart.Evolve(s, e)
				history = append(history, e)
			}
			if len(s.Lines) == cart.MaxLines {
				reached["full cart"]++
			}
			if slices.ContainsFunc(s.Lines, func(l cart.Line) bool { return l.Quantity == cart.MaxQuantity }) {
				reached["999 units"]++
			}
			if msg := violation(s); msg != "" {
				t.Fatalf("seed %d step %d: after %T%+v: %s\nstate: %+v", seed, step, cmd, cmd, msg, s)
			}
		}
		if accepted == 0 {
			t.Fatalf("seed %d: no command accepted in %d steps; the generator is useless", seed, steps)
		}
		if !reflect.DeepEqual(s, cart.Decider.Fold(history...)) {
			t.Fatalf("seed %d: incremental state differs from a fold of the history", seed)
		}
	}
	for _, edge := range []string{"too many lines", "quantity range", "full cart", "999 units",
		"cart.Opened", "cart.ItemAdded", "cart.QuantityChanged", "cart.ItemRemoved", "cart.CheckedOut", "cart.Reopened"} {
		if reached[edge] == 0 {
			t.Errorf("no sequence reached %q", edge)
		}
	}
	t.Logf("edges reached: %v", reached)
}

// violation returns what is wrong with s, or "".
func violation(s cart.State) string {
	switch {
	case s.Status != cart.StatusOpen && s.Status != cart.StatusCheckedOut:
		return "opened cart has status " + string(s.Status)
	case len(s.Lines) > cart.MaxLines:
		return "too many lines"
	case (s.Status == cart.StatusCheckedOut) != (s.OrderID != ""):
		return "order id set iff checked out does not hold"
	case s.Status == cart.StatusCheckedOut && len(s.Lines) == 0:
		return "checked out with no lines"
	}
	var total int64
	seen := map[string]bool{}
	for _, l := range s.Lines {
		switch {
		case l.Quantity < 1 || l.Quantity > cart.MaxQuantity:
			return "quantity out of range"
		case l.UnitPriceCents < 1 || l.UnitPriceCents > cart.MaxUnitPriceCents:
			return "price out of range"
		case seen[l.ProductID]:
			return "two lines for product " + l.ProductID
		case cart.ValidateProductID(l.ProductID) != nil:
			return "invalid product id " + l.ProductID
		}
		seen[l.ProductID] = true
		total += int64(l.Quantity) * l.UnitPriceCents
	}
	if total != s.TotalCents {
		return "total is not Σ quantity × price"
	}
	return ""
}

// randomCommand favours products already in the cart and values at the edges
// of the rules, so that sequences reach full carts, 999-unit lines and
// checkouts. A filling sequence mostly adds new products, to reach MaxLines.
func randomCommand(rng *rand.Rand, s cart.State, filling bool) cart.Command {
	product := func() string {
		newID := "x" + string(rune('a'+rng.IntN(26))) + string(rune('a'+rng.IntN(26)))
		if filling && rng.IntN(8) > 0 {
			return newID
		}
		if len(s.Lines) > 0 && rng.IntN(3) > 0 {
			return s.Lines[rng.IntN(len(s.Lines))].ProductID
		}
		ids := []string{"", "bad id", newID}
		return ids[rng.IntN(len(ids))]
	}
	quantity := func() int {
		return []int{-1, 0, 1, 2, 500, 998, 999, 1000, rng.IntN(1200)}[rng.IntN(9)]
	}
	price := func(p string) int64 {
		if i := slices.IndexFunc(s.Lines, func(l cart.Line) bool { return l.ProductID == p }); i >= 0 && rng.IntN(4) > 0 {
			return s.Lines[i].UnitPriceCents
		}
		return []int64{-1, 0, 1, 99, cart.MaxUnitPriceCents, cart.MaxUnitPriceCents + 1, rng.Int64N(cart.MaxUnitPriceCents) + 1}[rng.IntN(7)]
	}
	orderID := func() string {
		if s.OrderID != "" && rng.IntN(2) == 0 {
			return s.OrderID
		}
		return []string{"", "o-1", "o-2", "o-3"}[rng.IntN(4)]
	}
	if s.Status == cart.StatusNone && rng.IntN(4) > 0 {
		return cart.Open{CustomerID: "ann"}
	}
	if filling && rng.IntN(100) > 0 {
		p := product()
		return cart.AddItem{ProductID: p, Quantity: quantity(), UnitPriceCents: price(p)}
	}
	switch rng.IntN(20) {
	case 0:
		return cart.Open{CustomerID: []string{"ann", ""}[rng.IntN(2)]}
	case 1, 2, 3, 4, 5, 6, 7, 8, 9:
		p := product()
		return cart.AddItem{ProductID: p, Quantity: quantity(), UnitPriceCents: price(p)}
	case 10, 11, 12:
		return cart.ChangeQuantity{ProductID: product(), Quantity: quantity()}
	case 13, 14:
		return cart.RemoveItem{ProductID: product()}
	case 15, 16:
		return cart.CheckOut{OrderID: orderID()}
	case 17, 18:
		return cart.Reopen{OrderID: orderID(), Reason: "rejected"}
	}
	return nil
}

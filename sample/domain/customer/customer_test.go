package customer_test

import (
	"errors"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/eventline/eventline/command/commandtest"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/sample/domain/customer"
)

var (
	registered = customer.Registered{CreditLimitCents: 1000}
	reserved1  = customer.CreditReserved{OrderID: "o-1", AmountCents: 600}
	refused2   = customer.CreditRefused{OrderID: "o-2", AmountCents: 500, AvailableCents: 400,
		Reason: "credit limit exceeded: 500 cents requested, 400 available"}
	released1 = customer.CreditReleased{OrderID: "o-1", AmountCents: 600}
)

func TestDecide(t *testing.T) {
	cases := []struct {
		name  string
		given []customer.Event
		when  customer.Command
		then  []customer.Event
		err   error
	}{
		{name: "register", when: customer.Register{CreditLimitCents: 1000}, then: []customer.Event{registered}},
		{name: "register with no credit", when: customer.Register{}, then: []customer.Event{customer.Registered{}}},
		{name: "register with the maximum limit", when: customer.Register{CreditLimitCents: customer.MaxCreditLimitCents},
			then: []customer.Event{customer.Registered{CreditLimitCents: customer.MaxCreditLimitCents}}},
		{name: "refuses a negative limit", when: customer.Register{CreditLimitCents: -1}, err: customer.ErrInvalidLimit},
		{name: "refuses a limit over the maximum", when: customer.Register{CreditLimitCents: customer.MaxCreditLimitCents + 1}, err: customer.ErrInvalidLimit},
		{name: "refuses registering twice", given: []customer.Event{registered}, when: customer.Register{CreditLimitCents: 1000}, err: customer.ErrAlreadyRegistered},
		{name: "refuses reserving for an unregistered customer", when: customer.ReserveCredit{OrderID: "o-1", AmountCents: 1}, err: customer.ErrNotRegistered},
		{name: "refuses releasing for an unregistered customer", when: customer.ReleaseCredit{OrderID: "o-1"}, err: customer.ErrNotRegistered},
		{name: "refuses a nil command", given: []customer.Event{registered}, when: nil, err: customer.ErrUnknownCommand},
		{name: "reserves within the limit", given: []customer.Event{registered}, when: customer.ReserveCredit{OrderID: "o-1", AmountCents: 600}, then: []customer.Event{reserved1}},
		{name: "reserves exactly the limit", given: []customer.Event{registered}, when: customer.ReserveCredit{OrderID: "o-1", AmountCents: 1000},
			then: []customer.Event{customer.CreditReserved{OrderID: "o-1", AmountCents: 1000}}},
		{name: "refuses over the remaining credit, as a decision", given: []customer.Event{registered, reserved1}, when: customer.ReserveCredit{OrderID: "o-2", AmountCents: 500},
			then: []customer.Event{refused2}},
		{name: "refuses any amount with no credit", given: []customer.Event{customer.Registered{}}, when: customer.ReserveCredit{OrderID: "o-1", AmountCents: 1},
			then: []customer.Event{customer.CreditRefused{OrderID: "o-1", AmountCents: 1, AvailableCents: 0, Reason: "credit limit exceeded: 1 cents requested, 0 available"}}},
		{name: "reserving again for a reserved order decides nothing", given: []customer.Event{registered, reserved1}, when: customer.ReserveCredit{OrderID: "o-1", AmountCents: 600}},
		{name: "reserving again for a refused order decides nothing", given: []customer.Event{registered, reserved1, refused2}, when: customer.ReserveCredit{OrderID: "o-2", AmountCents: 100}},
		{name: "reserving again for a released order decides nothing", given: []customer.Event{registered, reserved1, released1}, when: customer.ReserveCredit{OrderID: "o-1", AmountCents: 600}},
		{name: "a release makes room", given: []customer.Event{registered, reserved1, released1}, when: customer.ReserveCredit{OrderID: "o-3", AmountCents: 1000},
			then: []customer.Event{customer.CreditReserved{OrderID: "o-3", AmountCents: 1000}}},
		{name: "refuses amount 0", given: []customer.Event{registered}, when: customer.ReserveCredit{OrderID: "o-1"}, err: customer.ErrInvalidAmount},
		{name: "refuses a negative amount", given: []customer.Event{registered}, when: customer.ReserveCredit{OrderID: "o-1", AmountCents: -5}, err: customer.ErrInvalidAmount},
		{name: "refuses an amount over the maximum", given: []customer.Event{registered}, when: customer.ReserveCredit{OrderID: "o-1", AmountCents: customer.MaxAmountCents + 1}, err: customer.ErrInvalidAmount},
		{name: "refuses an empty order id", given: []customer.Event{registered}, when: customer.ReserveCredit{AmountCents: 1}, err: customer.ErrInvalidOrderID},
		{name: "refuses an overlong order id", given: []customer.Event{registered}, when: customer.ReserveCredit{OrderID: strings.Repeat("o", 129), AmountCents: 1}, err: customer.ErrInvalidOrderID},
		{name: "release", given: []customer.Event{registered, reserved1}, when: customer.ReleaseCredit{OrderID: "o-1"}, then: []customer.Event{released1}},
		{name: "release twice decides nothing", given: []customer.Event{registered, reserved1, released1}, when: customer.ReleaseCredit{OrderID: "o-1"}},
		{name: "releasing a refused order decides nothing", given: []customer.Event{registered, reserved1, refused2}, when: customer.ReleaseCredit{OrderID: "o-2"}},
		{name: "refuses releasing an unknown order", given: []customer.Event{registered}, when: customer.ReleaseCredit{OrderID: "o-9"}, err: customer.ErrReservationNotFound},
		{name: "refuses releasing a malformed order id", given: []customer.Event{registered}, when: customer.ReleaseCredit{OrderID: "o 9"}, err: customer.ErrInvalidOrderID},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := commandtest.For(t, customer.Decider).Given(c.given...).When(c.when)
			if c.err == nil {
				s.Then(c.then...)
				return
			}
			s.ThenError(c.err)
			if _, err := customer.Decide(customer.Decider.Fold(c.given...), c.when); !errors.Is(err, customer.ErrRuleViolated) {
				t.Errorf("error %v does not match ErrRuleViolated", err)
			}
		})
	}
}

func TestStates(t *testing.T) {
	commandtest.For(t, customer.Decider).Given(registered, reserved1).When(customer.ReserveCredit{OrderID: "o-2", AmountCents: 500}).
		ThenState(customer.State{Registered: true, CreditLimitCents: 1000, ReservedCents: 600, Orders: map[string]customer.Reservation{
			"o-1": {AmountCents: 600, Status: customer.Reserved},
			"o-2": {AmountCents: 500, Status: customer.Refused},
		}})
	commandtest.For(t, customer.Decider).Given(registered, reserved1).When(customer.ReleaseCredit{OrderID: "o-1"}).
		ThenState(customer.State{Registered: true, CreditLimitCents: 1000, Orders: map[string]customer.Reservation{
			"o-1": {AmountCents: 600, Status: customer.Released},
		}})
}

// TestRandomReservationsStayWithinLimit runs random reserve and release
// sequences, including repeats of the same order, and checks that the
// reserved credit never exceeds the limit, equals the sum of live
// reservations, and that each order is reserved at most once.
func TestRandomReservationsStayWithinLimit(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		s := customer.Decider.Fold(customer.Registered{CreditLimitCents: rng.Int64N(5000)})
		reservations := map[string]int{}
		var refusals int
		for step := range 300 {
			id := "o-" + string(rune('a'+rng.IntN(20)))
			var cmd customer.Command = customer.ReserveCredit{OrderID: id, AmountCents: rng.Int64N(1500) + 1}
			if rng.IntN(4) == 0 {
				cmd = customer.ReleaseCredit{OrderID: id}
			}
			before := s
			before.Orders = maps.Clone(s.Orders)
			events, err := customer.Decide(s, cmd)
			if !reflect.DeepEqual(s, before) {
				t.Fatalf("seed %d step %d: Decide mutated the state", seed, step)
			}
			if err != nil && !errors.Is(err, customer.ErrReservationNotFound) {
				t.Fatalf("seed %d step %d: %T%+v: unexpected error %v", seed, step, cmd, cmd, err)
			}
			for _, e := range events {
				switch e := e.(type) {
				case customer.CreditReserved:
					reservations[e.OrderID]++
				case customer.CreditRefused:
					refusals++
				}
				s = customer.Evolve(s, e)
			}
			var live int64
			for _, r := range s.Orders {
				if r.Status == customer.Reserved {
					live += r.AmountCents
				}
			}
			if s.ReservedCents != live || s.ReservedCents > s.CreditLimitCents || s.ReservedCents < 0 {
				t.Fatalf("seed %d step %d: reserved %d, live reservations %d, limit %d", seed, step, s.ReservedCents, live, s.CreditLimitCents)
			}
		}
		for id, n := range reservations {
			if n > 1 {
				t.Fatalf("seed %d: order %s reserved %d times", seed, id, n)
			}
		}
		if seed == 0 && (len(reservations) == 0 || refusals == 0) {
			t.Fatalf("seed 0 reached %d reservations and %d refusals; the generator is useless", len(reservations), refusals)
		}
	}
}

func TestRegisterRoundTrip(t *testing.T) {
	reg := eventstore.NewRegistry()
	customer.RegisterEvents(reg)
	cases := []struct {
		event customer.Event
		typ   string
		json  string
	}{
		{registered, "customer.registered", `{"credit_limit_cents":1000}`},
		{reserved1, "customer.credit_reserved", `{"order_id":"o-1","amount_cents":600}`},
		{refused2, "customer.credit_refused", `{"order_id":"o-2","amount_cents":500,"available_cents":400,"reason":"credit limit exceeded: 500 cents requested, 400 available"}`},
		{released1, "customer.credit_released", `{"order_id":"o-1","amount_cents":600}`},
	}
	var names []string
	for _, c := range cases {
		ev, err := reg.Encode(c.event)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != c.typ || string(ev.Data) != c.json {
			t.Errorf("Encode(%T) = %s %s, want %s %s", c.event, ev.Type, ev.Data, c.typ, c.json)
		}
		back, err := reg.Decode(eventstore.Record{Event: ev, StreamID: "customer-ann", Version: 1})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, c.event) {
			t.Errorf("Decode(%s) = %#v, want %#v", c.typ, back, c.event)
		}
		names = append(names, c.typ)
	}
	slices.Sort(names)
	if got := reg.Types(); !slices.Equal(got, names) {
		t.Errorf("registered %v, want %v", got, names)
	}
}

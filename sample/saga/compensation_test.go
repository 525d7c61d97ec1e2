package saga_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/sample/cart"
	"github.com/eventline/eventline/sample/customer"
	"github.com/eventline/eventline/sample/order"
	"github.com/eventline/eventline/sample/saga"
)

// errStoreBlip is the transient store failure the tests inject.
var errStoreBlip = errors.New("store briefly unavailable")

// fault is one thing that happens at the first append of an event of type typ
// through a faultyStore.
type fault struct {
	typ string
	// fail makes that append fail once: before it reaches the store (nothing
	// is written) or, when after is set, after it was written (the caller
	// sees an error though the events are in, as after a timeout).
	fail, after bool
	// meanwhile, when set, runs at that moment, before the append goes on or
	// fails: what the rest of the world does before the saga retries.
	meanwhile func()
}

// faultyStore is the saga's store with faults injected into its appends.
// Every fault fires once.
type faultyStore struct {
	eventstore.Store
	mu     sync.Mutex
	faults []fault
	fired  []bool
}

func newFaultyStore(s eventstore.Store, faults ...fault) *faultyStore {
	return &faultyStore{Store: s, faults: faults, fired: make([]bool, len(faults))}
}

func (f *faultyStore) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	f.mu.Lock()
	var hit *fault
	for i, ft := range f.faults {
		if !f.fired[i] && slices.ContainsFunc(events, func(e eventstore.Event) bool { return e.Type == ft.typ }) {
			f.fired[i] = true
			hit = &f.faults[i]
			break
		}
	}
	f.mu.Unlock()
	if hit == nil {
		return f.Store.Append(ctx, stream, expected, events...)
	}
	if hit.meanwhile != nil {
		hit.meanwhile()
	}
	switch {
	case !hit.fail:
		return f.Store.Append(ctx, stream, expected, events...)
	case hit.after:
		if _, err := f.Store.Append(ctx, stream, expected, events...); err != nil {
			return eventstore.AppendResult{}, err
		}
	}
	return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", stream, errStoreBlip)
}

// allFired reports whether every fault fired, i.e. the test exercised what it
// claims to.
func (f *faultyStore) allFired() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !slices.Contains(f.fired, false)
}

// customerState folds a customer's stream.
func (w *world) customerState(id string) customer.State {
	_, events := w.stream("customer-" + id)
	s := customer.Decider.Initial()
	for _, e := range events {
		s = customer.Evolve(s, e.(customer.Event))
	}
	return s
}

// A transient store failure at any step of the saga, on the success path and
// on the compensation path, is retried and the saga still ends consistent:
// the order final, its cart checked out for it when confirmed and open again
// when rejected, and the customer's credit reserved exactly for a confirmed
// order and not at all for a rejected one. Every step decides from the
// order's current state, so a retry after a partial compensation finishes the
// compensation instead of starting the success path.
func TestTransientFailureAtAnyStepLeavesTheSagaConsistent(t *testing.T) {
	type path struct {
		name string
		// setup runs before the checkout of cart c1 for order o1 by customer
		// "cust" (399 cents).
		setup func(w *world)
		// steps are the event types whose appends fail once, one case each.
		steps []string
		// meanwhile runs while the failing step fails.
		meanwhile func(w *world)
		// extra faults of the path, in every case.
		extra func(w *world) []fault
		// want returns the final status when the step failed before or
		// after its append.
		want func(step string, after bool) order.Status
	}
	confirmed := func(string, bool) order.Status { return order.StatusConfirmed }
	rejected := func(string, bool) order.Status { return order.StatusRejected }
	paths := []path{{
		name:  "credit reserved",
		setup: func(w *world) { w.register("cust", 1000) },
		steps: []string{order.TypePlaced, customer.TypeCreditReserved, order.TypeConfirmed},
		want:  confirmed,
	}, {
		name:  "credit refused",
		setup: func(w *world) { w.register("cust", 300) },
		steps: []string{order.TypePlaced, customer.TypeCreditRefused, order.TypeRejected, cart.TypeReopened},
		want:  rejected,
	}, {
		// The customer is unknown at checkout and registers (with credit
		// enough) while a step fails. Before the order is rejected, the retry
		// finds a pending order and a registered customer: it reserves and the
		// order is confirmed. Once the order is rejected, the retry only
		// finishes the compensation.
		name:      "unknown customer registering before the retry",
		steps:     []string{order.TypePlaced, order.TypeRejected, cart.TypeReopened},
		meanwhile: func(w *world) { w.register("cust", 1000) },
		want: func(step string, after bool) order.Status {
			if step == cart.TypeReopened || step == order.TypeRejected && after {
				return order.StatusRejected
			}
			return order.StatusConfirmed
		},
	}, {
		// The customer is unknown at checkout; while the saga rejects the
		// order, a concurrent handling of the same checkout (another process
		// whose claim on it expired) finds the customer registered and
		// reserves credit. The reservation for the rejected order is released.
		name:  "credit reserved for an order rejected meanwhile",
		steps: []string{customer.TypeCreditReleased, cart.TypeReopened},
		extra: func(w *world) []fault {
			return []fault{{typ: order.TypeRejected, meanwhile: func() {
				w.register("cust", 1000)
				checkout := w.recordOf(cart.TypeCheckedOut)
				ctx := command.WithID(context.Background(), checkout.ID.String()+"/"+saga.StepReserve)
				if _, err := w.customers.Handle(ctx, "cust", customer.ReserveCredit{OrderID: "o1", AmountCents: 399}); err != nil {
					w.t.Errorf("concurrent reservation: %v", err)
				}
			}}}
		},
		want: rejected,
	}}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			for _, step := range p.steps {
				for _, after := range []bool{false, true} {
					when := "before"
					if after {
						when = "after"
					}
					t.Run(fmt.Sprintf("%s fails %s its append", step, when), func(t *testing.T) {
						w := newSQLiteWorld(t)
						if p.setup != nil {
							p.setup(w)
						}
						f := fault{typ: step, fail: true, after: after}
						if p.meanwhile != nil {
							f.meanwhile = func() { p.meanwhile(w) }
						}
						faults := []fault{f}
						if p.extra != nil {
							faults = append(p.extra(w), faults...)
						}
						store := newFaultyStore(w.store, faults...)
						ps := orderedChannel(t)
						startSaga(t, saga.Config{Store: store, Registry: w.reg, Subscriber: ps, Publisher: ps,
							MaxRetries: 3, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Logger: quiet})
						r, err := relay.New(relay.Config{Store: w.store, Publisher: ps, Checkpoint: &relay.MemoryCheckpoint{},
							MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, Logger: quiet})
						if err != nil {
							t.Fatal(err)
						}
						run(t, "relay", r.Run, nil)

						w.checkout("c1", "cust", "o1")
						// GoChannel's Publish returns once the saga acked, so
						// with the relay at the head every event was handled
						// and no handling appended anything after it.
						waitFor(t, "every event relayed and handled", func() bool {
							st := w.order("o1").Status
							return r.Status().Position == w.head() && (st == order.StatusConfirmed || st == order.StatusRejected)
						})
						if !store.allFired() {
							t.Fatal("the injected failure never happened")
						}
						assertConsistent(t, w, "o1", "c1", "cust", p.want(step, after))
					})
				}
			}
		})
	}
}

// assertConsistent checks the end state of order orderID of cart cartID by
// customer customerID (399 cents): final with status want, the cart checked
// out for a confirmed order and open again for a rejected one, and credit
// reserved exactly for a confirmed order.
func assertConsistent(t *testing.T, w *world, orderID, cartID, customerID string, want order.Status) {
	t.Helper()
	o := w.order(orderID)
	c := w.cartState(cartID)
	cust := w.customerState(customerID)
	r, hasReservation := cust.Orders[orderID]
	if o.Status != want {
		t.Errorf("order %s is %q, want %q", orderID, o.Status, want)
	}
	switch o.Status {
	case order.StatusConfirmed:
		if c.Status != cart.StatusCheckedOut || c.OrderID != orderID {
			t.Errorf("cart %s is %q for order %q, want checked out for the confirmed order %s", cartID, c.Status, c.OrderID, orderID)
		}
		if cust.ReservedCents != 399 || r.Status != customer.Reserved {
			t.Errorf("customer %s: %d cents reserved, reservation %+v; want 399 reserved for the confirmed order", customerID, cust.ReservedCents, r)
		}
	case order.StatusRejected:
		if c.Status != cart.StatusOpen || c.OrderID != "" || c.TotalCents != 399 || !slices.Contains(c.ReopenedOrders, orderID) {
			t.Errorf("cart %s is %q for order %q (%d cents), want open again with its 399 cents after the rejection", cartID, c.Status, c.OrderID, c.TotalCents)
		}
		if cust.ReservedCents != 0 || hasReservation && r.Status == customer.Reserved {
			t.Errorf("customer %s: %d cents reserved, reservation %+v; want nothing held for the rejected order", customerID, cust.ReservedCents, r)
		}
	default:
		t.Errorf("order %s is %q, not final", orderID, o.Status)
	}
	_, events := w.stream("customer-" + customerID)
	var reserved, released int
	for _, e := range events {
		switch e := e.(type) {
		case customer.CreditReserved:
			if e.OrderID == orderID {
				reserved++
			}
		case customer.CreditReleased:
			if e.OrderID == orderID {
				released++
			}
		}
	}
	if reserved > 1 || released > reserved {
		t.Errorf("customer %s: credit reserved %d and released %d times for order %s", customerID, reserved, released, orderID)
	}
}

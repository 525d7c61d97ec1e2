package saga_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/relay/consume"
	"github.com/eventline/eventline/sample/cart"
	"github.com/eventline/eventline/sample/customer"
	"github.com/eventline/eventline/sample/order"
	"github.com/eventline/eventline/sample/saga"
)

// inProcess wires the world as `cart serve` does: relay → GoChannel → saga.
func inProcess(t *testing.T, w *world, dedup consume.DedupStore, reg prometheus.Registerer) *gochannel.GoChannel {
	t.Helper()
	ps := orderedChannel(t)
	startSaga(t, saga.Config{Store: w.store, Registry: w.reg, Subscriber: ps, Publisher: ps, Dedup: dedup,
		MaxRetries: 2, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		Logger: quiet, Registerer: reg})
	startRelay(t, w, ps, &relay.MemoryCheckpoint{})
	return ps
}

func TestCreditReservedConfirmsTheOrder(t *testing.T) {
	w := newWorld(t)
	inProcess(t, w, nil, nil)
	w.register("ann", 1000)
	w.checkout("c1", "ann", "o1")

	o := w.waitOrder("o1", order.StatusConfirmed)
	if o.CartID != "c1" || o.CustomerID != "ann" || o.TotalCents != 399 || len(o.Items) != 2 {
		t.Fatalf("confirmed order %+v, want cart c1, customer ann, 2 items, 399 cents", o)
	}
	if reserved, refused := w.reservations("ann", "o1"); reserved != 1 || refused != 0 {
		t.Fatalf("credit reserved %d times and refused %d times, want 1 and 0", reserved, refused)
	}
	if s := w.cartState("c1"); s.Status != cart.StatusCheckedOut || s.OrderID != "o1" {
		t.Fatalf("cart is %s for order %q, want checked out for o1", s.Status, s.OrderID)
	}

	// Causation chains each event to the one the saga reacted to; the
	// checkout request's correlation id runs through all of them.
	checkedOut := w.recordOf(cart.TypeCheckedOut)
	reserved := w.recordOf(customer.TypeCreditReserved)
	orderRecs, _ := w.stream("order-o1")
	if len(orderRecs) != 2 || orderRecs[0].Type != order.TypePlaced || orderRecs[1].Type != order.TypeConfirmed {
		t.Fatalf("order stream %v, want placed, confirmed", types(orderRecs))
	}
	for _, c := range []struct {
		rec   eventstore.Record
		cause eventstore.Record
		step  string
	}{
		{orderRecs[0], checkedOut, saga.StepPlace},
		{reserved, checkedOut, saga.StepReserve},
		{orderRecs[1], reserved, saga.StepConfirm},
	} {
		md := c.rec.Metadata
		if md.CausationID != c.cause.ID.String() || md.CorrelationID != "req-o1" ||
			md.Headers[command.HeaderCommandID] != c.cause.ID.String()+"/"+c.step {
			t.Errorf("%s: metadata %+v, want causation %s (%s), correlation req-o1, command id %s/%s",
				c.rec.Type, md, c.cause.ID, c.cause.Type, c.cause.ID, c.step)
		}
	}
}

func TestCreditRefusedRejectsTheOrderAndReopensTheCart(t *testing.T) {
	w := newWorld(t)
	inProcess(t, w, nil, nil)
	w.register("ann", 300)
	w.checkout("c1", "ann", "o1") // 399 cents

	o := w.waitOrder("o1", order.StatusRejected)
	if want := "credit limit exceeded: 399 cents requested, 300 available"; o.Reason != want {
		t.Fatalf("rejected with reason %q, want %q", o.Reason, want)
	}
	waitFor(t, "cart c1 reopened", func() bool { return w.cartState("c1").Status == cart.StatusOpen })
	if reserved, refused := w.reservations("ann", "o1"); reserved != 0 || refused != 1 {
		t.Fatalf("credit reserved %d times and refused %d times, want 0 and 1", reserved, refused)
	}
	c := w.cartState("c1")
	if c.TotalCents != 399 || len(c.Lines) != 2 || c.OrderID != "" {
		t.Fatalf("reopened cart %+v, want its 2 lines (399 cents) back and no order", c)
	}
	refusedRec := w.recordOf(customer.TypeCreditRefused)
	reopened := w.recordOf(cart.TypeReopened)
	if reopened.Metadata.CausationID != refusedRec.ID.String() || reopened.Metadata.CorrelationID != "req-o1" {
		t.Fatalf("cart.reopened metadata %+v, want causation %s, correlation req-o1", reopened.Metadata, refusedRec.ID)
	}
	if e, _ := w.reg.Decode(reopened); e != (cart.Reopened{OrderID: "o1", Reason: o.Reason}) {
		t.Fatalf("reopened event %+v, want order o1 with the rejection reason", e)
	}

	// The reopened cart takes commands again: fewer apples fit the limit.
	w.cart("c1", "req-o2", cart.ChangeQuantity{ProductID: "apple", Quantity: 1}, cart.CheckOut{OrderID: "o2"})
	w.waitOrder("o2", order.StatusConfirmed)
	if reserved, _ := w.reservations("ann", "o2"); reserved != 1 {
		t.Fatalf("credit reserved %d times for the second order, want 1", reserved)
	}
	if o := w.order("o1"); o.Status != order.StatusRejected {
		t.Fatalf("first order is %s after the second checkout, want rejected", o.Status)
	}
}

func TestUnknownCustomerRejectsTheOrder(t *testing.T) {
	w := newWorld(t)
	inProcess(t, w, nil, nil)
	w.checkout("c1", "bob", "o1")

	o := w.waitOrder("o1", order.StatusRejected)
	if o.Reason != `unknown customer "bob"` {
		t.Fatalf("rejected with reason %q, want unknown customer", o.Reason)
	}
	waitFor(t, "cart c1 reopened", func() bool { return w.cartState("c1").Status == cart.StatusOpen })
	if recs, _ := w.stream("customer-bob"); len(recs) != 0 {
		t.Fatalf("the unknown customer got events: %v", types(recs))
	}
	checkedOut := w.recordOf(cart.TypeCheckedOut)
	orderRecs, _ := w.stream("order-o1")
	if len(orderRecs) != 2 || orderRecs[1].Metadata.CausationID != checkedOut.ID.String() {
		t.Fatalf("order stream %v; want placed, rejected caused by the checkout", types(orderRecs))
	}
}

// The same events delivered again change nothing: with de-duplication the
// handler is not even called; without it the idempotent commands write
// nothing.
func TestDuplicateDeliveryReservesCreditOnce(t *testing.T) {
	for _, c := range []struct {
		name    string
		dedup   consume.DedupStore
		handled float64 // times the checkout reached the handler
	}{
		{"deduplicated", must(consume.NewMemoryDedup(consume.MemoryDedupConfig{})), 1},
		{"without de-duplication", forgetfulDedup{}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			metrics := prometheus.NewRegistry()
			ps := inProcess(t, w, c.dedup, metrics)
			w.register("ann", 1000)
			w.checkout("c1", "ann", "o1")
			w.waitOrder("o1", order.StatusConfirmed)
			head := w.head()

			for _, typ := range []string{cart.TypeCheckedOut, customer.TypeCreditReserved} {
				msg := relay.NewMessage(context.Background(), w.recordOf(typ))
				// Publish returns once the saga acked the duplicate.
				if err := ps.Publish(relay.DefaultTopic, msg); err != nil {
					t.Fatal(err)
				}
			}
			if got := w.head(); got != head {
				t.Fatalf("the duplicates appended events: head %s, was %s", got, head)
			}
			if reserved, _ := w.reservations("ann", "o1"); reserved != 1 {
				t.Fatalf("credit reserved %d times, want 1", reserved)
			}
			if got := counter(t, metrics, cart.TypeCheckedOut, "handled"); got != c.handled {
				t.Fatalf("checkout handled %v times, want %v", got, c.handled)
			}
		})
	}
}

// The relay publishing the whole log again (a checkpoint lost) while the saga
// is busy changes nothing either, even with no de-duplication at all.
func TestRepublishedLogChangesNothing(t *testing.T) {
	w := newWorld(t)
	ps := inProcess(t, w, forgetfulDedup{}, nil)
	w.register("ann", 500)
	w.checkout("c1", "ann", "o1")
	w.checkout("c2", "ann", "o2") // 399 + 399 > 500: refused
	w.waitOrder("o1", order.StatusConfirmed)
	w.waitOrder("o2", order.StatusRejected)
	waitFor(t, "cart c2 reopened", func() bool { return w.cartState("c2").Status == cart.StatusOpen })
	head := w.head()

	// A second relay from position 0 publishes every event again, alongside
	// the first. GoChannel's Publish returns once the saga acked, so when its
	// checkpoint reaches the head every republished event was handled.
	r, err := relay.New(relay.Config{Store: w.store, Publisher: ps, Checkpoint: &relay.MemoryCheckpoint{}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	run(t, "second relay", r.Run, nil)
	waitFor(t, "second relay at the head", func() bool { return r.Status().Position == head })
	if got := w.head(); got != head {
		t.Fatalf("republishing appended events: head %s, was %s", got, head)
	}
	for _, o := range []string{"o1", "o2"} {
		if reserved, refused := w.reservations("ann", o); reserved+refused != 1 {
			t.Fatalf("order %s: credit reserved %d and refused %d times, want one answer", o, reserved, refused)
		}
	}
}

func TestMalformedEventsArePoisonedAndTheSagaGoesOn(t *testing.T) {
	w := newWorld(t)
	ps := inProcess(t, w, nil, nil)
	poison, err := ps.Subscribe(context.Background(), saga.DefaultPoisonTopic)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var poisoned []*message.Message
	go func() {
		for m := range poison {
			mu.Lock()
			poisoned = append(poisoned, m)
			mu.Unlock()
			m.Ack()
		}
	}()

	bad := []eventstore.Record{
		{Event: eventstore.Event{ID: uuid.New(), Type: cart.TypeCheckedOut, Data: []byte("not json")},
			StreamID: "cart-x", Version: 1, Position: eventstore.SeqPosition(1000)},
		{Event: eventstore.Event{ID: uuid.New(), Type: cart.TypeCheckedOut,
			Data: []byte(`{"order_id":"o9","customer_id":"ann","items":[{"product_id":"a","quantity":1,"unit_price_cents":1}],"total_cents":1}`)},
			StreamID: "basket-x", Version: 1, Position: eventstore.SeqPosition(1001)},
	}
	for _, rec := range bad {
		if err := ps.Publish(relay.DefaultTopic, relay.NewMessage(context.Background(), rec)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "two poisoned messages", func() bool { mu.Lock(); defer mu.Unlock(); return len(poisoned) == 2 })
	mu.Lock()
	for i, m := range poisoned {
		if m.UUID != bad[i].ID.String() || !strings.Contains(m.Metadata.Get(middleware.ReasonForPoisonedKey), "malformed event") {
			t.Errorf("poisoned %s with reason %q, want %s as a malformed event", m.UUID, m.Metadata.Get(middleware.ReasonForPoisonedKey), bad[i].ID)
		}
	}
	mu.Unlock()
	if recs, _ := w.stream("order-o9"); len(recs) != 0 {
		t.Fatalf("a malformed checkout placed an order: %v", types(recs))
	}

	w.register("ann", 1000)
	w.checkout("c1", "ann", "o1")
	w.waitOrder("o1", order.StatusConfirmed)
}

func TestConfig(t *testing.T) {
	err := saga.Config{}.Validate()
	if !errors.Is(err, saga.ErrInvalidConfig) {
		t.Fatalf("empty config: %v, want ErrInvalidConfig", err)
	}
	for _, field := range []string{"Store", "Registry", "Subscriber", "Publisher"} {
		if !strings.Contains(err.Error(), field+" ") {
			t.Errorf("empty config error %q does not name %s", err, field)
		}
	}

	w := newWorld(t)
	ps := orderedChannel(t)
	valid := saga.Config{Store: w.store, Registry: w.reg, Subscriber: ps, Publisher: ps, Logger: quiet}
	if err := valid.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	cartsOnly := eventstore.NewRegistry()
	cart.RegisterEvents(cartsOnly)
	for name, cfg := range map[string]saga.Config{
		"registry without order events": with(valid, func(c *saga.Config) { c.Registry = cartsOnly }),
		"a topic twice":                 with(valid, func(c *saga.Config) { c.Topics = []string{"a", "a"} }),
		"an empty topic":                with(valid, func(c *saga.Config) { c.Topics = []string{""} }),
		"retry max below initial":       with(valid, func(c *saga.Config) { c.MinBackoff, c.MaxBackoff = time.Second, time.Millisecond }),
		"negative command attempts":     with(valid, func(c *saga.Config) { c.Command.MaxAttempts = -1 }),
	} {
		if err := cfg.Validate(); !errors.Is(err, saga.ErrInvalidConfig) {
			t.Errorf("%s: Validate = %v, want ErrInvalidConfig", name, err)
		}
		if _, err := saga.New(cfg); !errors.Is(err, saga.ErrInvalidConfig) {
			t.Errorf("%s: New = %v, want ErrInvalidConfig", name, err)
		}
	}

	s, stop := startSaga(t, valid)
	if err := s.Run(context.Background()); !errors.Is(err, saga.ErrRunning) {
		t.Fatalf("second Run: %v, want ErrRunning", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run after its context ended: %v, want nil", err)
	}
}

func TestTopicsByType(t *testing.T) {
	got := saga.TopicsByType("shop.")
	want := []string{"shop.cart.checked_out", "shop.customer.credit_reserved", "shop.customer.credit_refused"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("TopicsByType = %v, want %v", got, want)
	}
}

// The relay publishing one topic per type, filtered to the saga's events,
// feeds the saga as well as one shared topic.
func TestTopicPerType(t *testing.T) {
	w := newWorld(t)
	ps := orderedChannel(t)
	startSaga(t, saga.Config{Store: w.store, Registry: w.reg, Subscriber: ps, Publisher: ps,
		Topics: saga.TopicsByType("shop."), Logger: quiet})
	r, err := relay.New(relay.Config{Store: w.store, Publisher: ps, Checkpoint: &relay.MemoryCheckpoint{},
		TopicFor: relay.TopicByType("shop."), Filter: relay.Types(saga.EventTypes()...), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	run(t, "relay", r.Run, nil)
	w.register("ann", 300)
	w.checkout("c1", "ann", "o1")
	w.checkout("c2", "bob", "o2")
	w.register("carl", 1000)
	w.checkout("c3", "carl", "o3")
	w.waitOrder("o1", order.StatusRejected)
	w.waitOrder("o2", order.StatusRejected)
	w.waitOrder("o3", order.StatusConfirmed)
}

func with(c saga.Config, f func(*saga.Config)) saga.Config {
	f(&c)
	return c
}

func types(recs []eventstore.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Type
	}
	return out
}

// counter reads eventline_saga_messages_total{type,result}.
func counter(t *testing.T, g prometheus.Gatherer, typ, result string) float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "eventline_saga_messages_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["type"] == typ && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// An unknown customer's order is rejected; if the customer registers and the
// checkout is delivered again, the order stays rejected and the redelivery
// asks for no credit: the rejection is final, so there is nothing to reserve
// and release. (A reservation that a concurrent handling made anyway is
// released: TestTransientFailureAtAnyStepLeavesTheSagaConsistent.)
func TestRedeliveredCheckoutOfARejectedOrderReservesNothing(t *testing.T) {
	w := newWorld(t)
	ps := inProcess(t, w, forgetfulDedup{}, nil)
	w.checkout("c1", "bob", "o1")
	w.waitOrder("o1", order.StatusRejected)
	waitFor(t, "cart c1 reopened", func() bool { return w.cartState("c1").Status == cart.StatusOpen })

	w.register("bob", 1000)
	head := w.head()
	// Publish returns once the saga acked the redelivery.
	if err := ps.Publish(relay.DefaultTopic, relay.NewMessage(context.Background(), w.recordOf(cart.TypeCheckedOut))); err != nil {
		t.Fatal(err)
	}
	if got := w.head(); got != head {
		t.Fatalf("the redelivered checkout appended events: head %s, was %s", got, head)
	}
	if _, events := w.stream("customer-bob"); len(events) != 1 {
		t.Fatalf("bob's events %+v, want only his registration", events)
	}
	if o := w.order("o1"); o.Status != order.StatusRejected {
		t.Fatalf("order is %s, want still rejected", o.Status)
	}
	if c := w.cartState("c1"); c.Status != cart.StatusOpen {
		t.Fatalf("cart is %s, want still open", c.Status)
	}
}

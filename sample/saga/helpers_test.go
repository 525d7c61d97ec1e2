package saga_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/eventstore/sqlite"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/relay/consume"
	"github.com/eventline/eventline/sample/cart"
	"github.com/eventline/eventline/sample/customer"
	"github.com/eventline/eventline/sample/order"
	"github.com/eventline/eventline/sample/saga"
	"github.com/redis/go-redis/v9"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// world is the write side of the sample: a store and the command handlers the
// command API uses, so tests drive carts and customers the way HTTP does.
type world struct {
	t         testing.TB
	store     eventstore.Store
	reg       *eventstore.Registry
	carts     *command.Handler[cart.State, cart.Command, cart.Event]
	customers *command.Handler[customer.State, customer.Command, customer.Event]
}

func newWorld(t testing.TB) *world {
	t.Helper()
	store := memory.New()
	t.Cleanup(func() { _ = store.Close() })
	return newWorldOn(t, store)
}

// newSQLiteWorld is a world on a SQLite event store in a fresh file.
func newSQLiteWorld(t testing.TB) *world {
	t.Helper()
	store, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "events.db"), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return newWorldOn(t, store)
}

func newWorldOn(t testing.TB, store eventstore.Store) *world {
	t.Helper()
	reg := eventstore.NewRegistry()
	cart.RegisterEvents(reg)
	order.RegisterEvents(reg)
	customer.RegisterEvents(reg)
	carts, err := command.NewHandler(store, reg, cart.Decider, command.Config{Name: "cart", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	customers, err := command.NewHandler(store, reg, customer.Decider, command.Config{Name: "customer", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return &world{t: t, store: store, reg: reg, carts: carts, customers: customers}
}

func (w *world) register(customerID string, limitCents int64) {
	w.t.Helper()
	if _, err := w.customers.Handle(context.Background(), customerID, customer.Register{CreditLimitCents: limitCents}); err != nil {
		w.t.Fatal(err)
	}
}

// cart runs commands on a cart, as the command API would for one request
// each, with the given correlation id.
func (w *world) cart(cartID, correlationID string, cmds ...cart.Command) {
	w.t.Helper()
	ctx := command.WithMetadata(context.Background(), eventstore.Metadata{CorrelationID: correlationID})
	for _, c := range cmds {
		if _, err := w.carts.Handle(ctx, cartID, c); err != nil {
			w.t.Fatalf("cart %s: %T%+v: %v", cartID, c, c, err)
		}
	}
}

// checkout opens a cart for customerID with the items and checks it out for
// orderID; the items total 2×150 + 1×99 = 399 cents.
func (w *world) checkout(cartID, customerID, orderID string) {
	w.t.Helper()
	w.cart(cartID, "req-"+orderID,
		cart.Open{CustomerID: customerID},
		cart.AddItem{ProductID: "apple", Quantity: 2, UnitPriceCents: 150},
		cart.AddItem{ProductID: "pear", Quantity: 1, UnitPriceCents: 99},
		cart.CheckOut{OrderID: orderID})
}

// stream returns a stream's records and their decoded events (none when the
// stream does not exist).
func (w *world) stream(id string) ([]eventstore.Record, []any) {
	w.t.Helper()
	var recs []eventstore.Record
	var events []any
	for rec, err := range w.store.ReadStream(context.Background(), id, 1) {
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			break
		}
		if err != nil {
			w.t.Fatal(err)
		}
		v, err := w.reg.Decode(rec)
		if err != nil {
			w.t.Fatal(err)
		}
		recs = append(recs, rec)
		events = append(events, v)
	}
	return recs, events
}

func (w *world) order(id string) order.State {
	_, events := w.stream("order-" + id)
	s := order.Decider.Initial()
	for _, e := range events {
		s = order.Evolve(s, e.(order.Event))
	}
	return s
}

func (w *world) cartState(id string) cart.State {
	_, events := w.stream("cart-" + id)
	s := cart.Decider.Initial()
	for _, e := range events {
		s = cart.Evolve(s, e.(cart.Event))
	}
	return s
}

// reservations counts the customer's CreditReserved and CreditRefused events
// for an order.
func (w *world) reservations(customerID, orderID string) (reserved, refused int) {
	_, events := w.stream("customer-" + customerID)
	for _, e := range events {
		switch e := e.(type) {
		case customer.CreditReserved:
			if e.OrderID == orderID {
				reserved++
			}
		case customer.CreditRefused:
			if e.OrderID == orderID {
				refused++
			}
		}
	}
	return reserved, refused
}

// waitOrder waits until the order reaches status.
func (w *world) waitOrder(id string, status order.Status) order.State {
	w.t.Helper()
	var s order.State
	waitFor(w.t, "order "+id+" "+string(status), func() bool {
		s = w.order(id)
		return s.Status == status
	})
	return s
}

// recordOf returns the first record of type typ in the log.
func (w *world) recordOf(typ string) eventstore.Record {
	w.t.Helper()
	for rec, err := range w.store.ReadAll(context.Background(), eventstore.Start) {
		if err != nil {
			w.t.Fatal(err)
		}
		if rec.Type == typ {
			return rec
		}
	}
	w.t.Fatalf("no %s in the log", typ)
	return eventstore.Record{}
}

func (w *world) head() eventstore.Position {
	w.t.Helper()
	p, err := w.store.Head(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	return p
}

// waitFor polls cond until it holds, failing the test after the deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling interval, not synchronisation
	}
}

// orderedChannel is a GoChannel whose Publish returns once the subscriber
// acked, which keeps messages in order and makes a hand-made publish complete
// when Publish returns.
func orderedChannel(t testing.TB) *gochannel.GoChannel {
	g := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, nil)
	t.Cleanup(func() { _ = g.Close() })
	return g
}

// startSaga runs a saga until the returned stop is called or the test ends,
// and returns once it has subscribed.
func startSaga(t testing.TB, cfg saga.Config) (s *saga.Saga, stop func() error) {
	t.Helper()
	s, err := saga.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, run(t, "saga", s.Run, s.Running())
}

// startRelay forwards the world's store to pub.
func startRelay(t testing.TB, w *world, pub message.Publisher, cp relay.Checkpoint) func() error {
	t.Helper()
	r, err := relay.New(relay.Config{Store: w.store, Publisher: pub, Checkpoint: cp,
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return run(t, "relay", r.Run, nil)
}

// run runs fn in a goroutine until stop is called (or the test ends), after
// waiting for ready when it is not nil.
func run(t testing.TB, what string, fn func(context.Context) error, ready <-chan struct{}) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- fn(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-errc })
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("%s: %v", what, err)
		}
	})
	if ready != nil {
		select {
		case <-ready:
		case err := <-errc:
			errc <- err // for stop
			t.Fatalf("%s stopped before it was ready: %v", what, err)
		case <-time.After(30 * time.Second):
			t.Fatalf("%s not ready after 30s", what)
		}
	}
	return stop
}

// forgetfulDedup remembers nothing, so every delivery reaches the handler: it
// shows that the saga's commands are idempotent without de-duplication.
type forgetfulDedup struct{}

func (forgetfulDedup) Claim(context.Context, string) (string, bool, error) { return "t", false, nil }
func (forgetfulDedup) Done(context.Context, string, string) error          { return nil }
func (forgetfulDedup) Release(context.Context, string, string) error       { return nil }

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func redisDedup(t testing.TB, client redis.UniversalClient, claimTTL time.Duration) *consume.RedisDedup {
	t.Helper()
	d, err := consume.NewRedisDedup(consume.RedisDedupConfig{Redis: client, Prefix: "el:test:dedup:", ClaimTTL: claimTTL})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

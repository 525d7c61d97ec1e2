package saga_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/relay/consume"
	"github.com/eventline/eventline/sample/cart"
	"github.com/eventline/eventline/sample/customer"
	"github.com/eventline/eventline/sample/order"
	"github.com/eventline/eventline/sample/saga"
)

const group = "saga"

// redisPublisher is the relay's transport in the split deployment.
func redisPublisher(t *testing.T, srv *redistest.Server) *redisstream.Publisher {
	t.Helper()
	// The redisstream publisher and subscriber close their clients on Close.
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{
		Client: redis.NewClient(&redis.Options{Addr: srv.Addr})}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	return pub
}

// redisSubscriber is one saga process's consumer in the group. Pending
// messages of a consumer that went quiet are claimed after 300ms (production
// values are minutes; the test cannot wait that long).
func redisSubscriber(t *testing.T, srv *redistest.Server, consumer string) *redisstream.Subscriber {
	t.Helper()
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client:        redis.NewClient(&redis.Options{Addr: srv.Addr}),
		ConsumerGroup: group, Consumer: consumer, OldestId: "0",
		DisableIndefiniteInitialBlock: true, BlockTime: 50 * time.Millisecond,
		ClaimInterval: 50 * time.Millisecond, MaxIdleTime: 300 * time.Millisecond,
		NackResendSleep: 20 * time.Millisecond,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	return sub
}

func redisSagaConfig(w *world, store eventstore.Store, sub *redisstream.Subscriber, pub message.Publisher, dedup consume.DedupStore) saga.Config {
	return saga.Config{Store: store, Registry: w.reg, Subscriber: sub, Publisher: pub, Dedup: dedup,
		MaxRetries: 2, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Logger: quiet}
}

// waitAllAcked waits until the consumer group has no pending message.
func waitAllAcked(t *testing.T, client *redis.Client) {
	t.Helper()
	waitFor(t, "every message acked", func() bool {
		p, err := client.XPending(context.Background(), relay.DefaultTopic, group).Result()
		return err == nil && p.Count == 0
	})
}

func TestRedisStreamsEndToEnd(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	w := newWorld(t)
	pub := redisPublisher(t, srv)
	sub := redisSubscriber(t, srv, "a")
	dedup := redisDedup(t, client, 0)
	startSaga(t, redisSagaConfig(w, w.store, sub, pub, dedup))
	startRelay(t, w, pub, relay.NewRedisCheckpoint(client, "el:test:relay:checkpoint"))

	w.register("ann", 1000)
	w.register("bob", 100)
	w.checkout("c1", "ann", "o1")
	w.checkout("c2", "bob", "o2")
	w.checkout("c3", "carl", "o3")

	w.waitOrder("o1", order.StatusConfirmed)
	if o := w.waitOrder("o2", order.StatusRejected); o.Reason != "credit limit exceeded: 399 cents requested, 100 available" {
		t.Fatalf("o2 rejected for %q", o.Reason)
	}
	if o := w.waitOrder("o3", order.StatusRejected); o.Reason != `unknown customer "carl"` {
		t.Fatalf("o3 rejected for %q", o.Reason)
	}
	for _, c := range []string{"c2", "c3"} {
		waitFor(t, "cart "+c+" reopened", func() bool { return w.cartState(c).Status == cart.StatusOpen })
	}
	if s := w.cartState("c1"); s.Status != cart.StatusCheckedOut {
		t.Fatalf("cart c1 is %s, want checked_out", s.Status)
	}
	if reserved, _ := w.reservations("ann", "o1"); reserved != 1 {
		t.Fatalf("credit reserved %d times for o1, want 1", reserved)
	}
	if reserved, refused := w.reservations("bob", "o2"); reserved != 0 || refused != 1 {
		t.Fatalf("bob: reserved %d, refused %d, want 0 and 1", reserved, refused)
	}
	// The dedup marks live in Redis, where every saga process sees them: one
	// per event on the topic (the router de-duplicates before the saga ignores
	// the events it does not handle). The saga's own last events (a reopened
	// cart) may still be on their way through the relay, so wait until every
	// event of the store was relayed, delivered and acked; then the marks must
	// match one for one.
	var events, marks int
	waitFor(t, "every event relayed, handled and acked", func() bool {
		events = 0
		for _, err := range w.store.ReadAll(context.Background(), eventstore.Start) {
			if err != nil {
				return false
			}
			events++
		}
		n, err := client.XLen(context.Background(), relay.DefaultTopic).Result()
		if err != nil || n != int64(events) {
			return false
		}
		p, err := client.XPending(context.Background(), relay.DefaultTopic, group).Result()
		if err != nil || p.Count != 0 {
			return false
		}
		keys, err := client.Keys(context.Background(), "el:test:dedup:*:done").Result()
		marks = len(keys)
		return err == nil && marks >= events
	})
	if marks != events {
		t.Fatalf("%d dedup marks, want one per event (%d)", marks, events)
	}
}

// killSwitch is a store whose first append of an event of type typ hangs the
// appending goroutine for good, as if the process froze or was killed there:
// after the append when after is set, before it otherwise.
type killSwitch struct {
	eventstore.Store
	typ      string
	after    bool
	once     sync.Once
	hit      chan struct{}
	release  chan struct{}
	returned chan struct{}
}

func (k *killSwitch) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	first := false
	if slices.ContainsFunc(events, func(e eventstore.Event) bool { return e.Type == k.typ }) {
		k.once.Do(func() { first = true })
	}
	if !first {
		return k.Store.Append(ctx, stream, expected, events...)
	}
	if k.after {
		if _, err := k.Store.Append(ctx, stream, expected, events...); err != nil {
			return eventstore.AppendResult{}, err
		}
	}
	close(k.hit)
	<-k.release
	defer close(k.returned)
	return eventstore.AppendResult{}, errors.New("killed")
}

// A saga process dies between reserving credit and confirming the order;
// another process in the consumer group takes over its unacknowledged message.
// The order ends confirmed and the credit is reserved exactly once.
func TestKilledBetweenReservingAndConfirming(t *testing.T) {
	for _, c := range []struct {
		name        string
		typ         string
		after       bool
		redelivered string // the event the survivor takes over
	}{
		// While handling cart.checked_out, right after the reservation was
		// written: the checkout is redelivered and ReserveCredit runs again.
		{"after the reservation was written", customer.TypeCreditReserved, true, cart.TypeCheckedOut},
		// While handling customer.credit_reserved, before the confirmation was
		// written: the reservation event is redelivered.
		{"before the confirmation was written", order.TypeConfirmed, false, customer.TypeCreditReserved},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := redistest.Start(t)
			client := srv.Client(t)
			w := newWorld(t)
			pub := redisPublisher(t, srv)
			// A claim of a dead process expires after a second; then the
			// survivor may handle the event.
			dedup := redisDedup(t, client, time.Second)

			doomed := &killSwitch{Store: w.store, typ: c.typ, after: c.after,
				hit: make(chan struct{}), release: make(chan struct{}), returned: make(chan struct{})}
			// The frozen process's poison publisher is its own: once let go, its
			// interrupted message must be nacked for redelivery, never poisoned.
			last := &lastWords{said: make(chan struct{})}
			cfgA := redisSagaConfig(w, doomed, redisSubscriber(t, srv, "doomed"), last, dedup)
			cfgA.CloseTimeout = 50 * time.Millisecond
			_, stopA := startSaga(t, cfgA)
			startRelay(t, w, pub, relay.NewRedisCheckpoint(client, "el:test:relay:checkpoint"))
			// Registered last, so it runs first: the frozen goroutine returns
			// before anything it holds is closed.
			t.Cleanup(func() {
				close(doomed.release)
				select {
				case <-doomed.returned:
				case <-time.After(30 * time.Second):
					t.Error("the frozen saga goroutine did not finish")
				}
				select {
				case <-last.said:
					t.Error("the frozen process poisoned its interrupted message; it must nack it")
				default:
				}
			})

			w.register("ann", 1000)
			w.checkout("c1", "ann", "o1")
			select {
			case <-doomed.hit:
			case <-time.After(30 * time.Second):
				t.Fatal("the saga never reached the kill point")
			}
			if err := stopA(); err != nil {
				t.Fatal(err)
			}
			if reserved, _ := w.reservations("ann", "o1"); reserved != 1 {
				t.Fatalf("at the kill: credit reserved %d times, want 1", reserved)
			}
			if s := w.order("o1").Status; s != order.StatusPending {
				t.Fatalf("at the kill: order is %s, want pending", s)
			}

			metrics := prometheus.NewRegistry()
			cfgB := redisSagaConfig(w, w.store, redisSubscriber(t, srv, "survivor"), pub, dedup)
			cfgB.Registerer = metrics
			startSaga(t, cfgB)
			w.waitOrder("o1", order.StatusConfirmed)
			waitAllAcked(t, client)
			if n := counter(t, metrics, c.redelivered, "handled"); n != 1 {
				t.Fatalf("the survivor handled the frozen process's %s %v times, want 1", c.redelivered, n)
			}
			if reserved, refused := w.reservations("ann", "o1"); reserved != 1 || refused != 0 {
				t.Fatalf("credit reserved %d and refused %d times, want 1 and 0", reserved, refused)
			}
			if recs, _ := w.stream("order-o1"); len(recs) != 2 {
				t.Fatalf("order stream %v, want placed, confirmed", types(recs))
			}
			if recs, _ := w.stream("customer-ann"); len(recs) != 2 {
				t.Fatalf("customer stream %v, want registered, credit_reserved", types(recs))
			}
		})
	}
}

// lastWords is the poison publisher of a frozen saga process; it records
// whether anything was poisoned.
type lastWords struct {
	once sync.Once
	said chan struct{}
}

func (l *lastWords) Publish(string, ...*message.Message) error {
	l.once.Do(func() { close(l.said) })
	return nil
}

func (l *lastWords) Close() error { return nil }

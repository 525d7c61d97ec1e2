package saga_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/sqlite"
	"github.com/eventline/eventline/internal/brokertest"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/relay/broker"
	"github.com/eventline/eventline/relay/consume"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/domain/customer"
	"github.com/eventline/eventline/sample/domain/order"
	"github.com/eventline/eventline/sample/saga"
)

// Environment of the relay child process (TestHelperRelayProcess).
const (
	envChildStore  = "EVENTLINE_TEST_RELAY_STORE"
	envChildRedis  = "EVENTLINE_TEST_RELAY_REDIS"
	envChildBroker = "EVENTLINE_TEST_RELAY_BROKER"
	envChildTopic  = "EVENTLINE_TEST_RELAY_TOPIC"
	envChildGroup  = "EVENTLINE_TEST_RELAY_GROUP"
)

const childCheckpointKey = "{el:relay:test}:checkpoint"

// TestHelperRelayProcess is not a test: run as a child process by
// TestSagaOverBrokers (with its environment set), it is the relay process that
// test kills with SIGKILL. Without that environment it returns at once.
func TestHelperRelayProcess(t *testing.T) {
	storePath := os.Getenv(envChildStore)
	if storePath == "" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	store, err := sqlite.Open(ctx, sqlite.Config{Path: storePath, PollInterval: 20 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv(envChildRedis)})
	defer rdb.Close()
	b, err := broker.Open(broker.Config{URL: os.Getenv(envChildBroker), Group: os.Getenv(envChildGroup), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	r, err := relay.New(relay.Config{Name: "child", Store: store, Publisher: b.Publisher(),
		Checkpoint: relay.NewRedisCheckpoint(rdb, childCheckpointKey),
		Topic:      os.Getenv(envChildTopic), Filter: relay.Types(saga.EventTypes()...),
		// Small batches: a kill lands between many publishes and saves.
		BatchSize: 4, MinBackoff: 5 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// relayProcess is a relay running in a child process.
type relayProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startRelayProcess(t *testing.T, env ...string) *relayProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperRelayProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &relayProcess{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(p.kill)
	return p
}

// kill stops the relay with SIGKILL: no deferred code, no checkpoint save.
func (p *relayProcess) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// TestSagaOverBrokers runs the relay (in a child process) and the saga over
// NATS JetStream and RabbitMQ through a relay SIGKILL and a broker restart:
// every checked-out cart ends as a confirmed or a rejected order, every event
// the saga reacts to reaches it, and every saga step (order placed, credit
// reserved or refused, order confirmed or rejected, cart reopened) is in the
// log exactly once.
//
// Both brokers are private servers restarted on their own data: the
// nats-server is killed and started again on its store directory; the
// RabbitMQ node is stopped (SIGTERM: it closes its clients' connections and
// stops) and started again on its data directory, its durable queues and
// persistent messages back, while the relay publishes and the saga consumes.
func TestSagaOverBrokers(t *testing.T) {
	t.Run("nats", func(t *testing.T) {
		srv := brokertest.StartNATS(t)
		sagaOverBroker(t, srv.URL, func(whileDown func()) {
			srv.Kill()
			whileDown()
			srv.Restart()
		})
	})
	t.Run("amqp", func(t *testing.T) {
		srv := brokertest.StartRabbit(t)
		if raceEnabled {
			// watermill-amqp v3.0.2 races with itself when it reconnects
			// (ConnectionWrapper.connected is replaced by its close-handling
			// goroutine while Publish and the subscriber read it, unlocked;
			// file and lines in relay/broker/amqp.go), which the race
			// detector reports as a failure of this test. The restart runs
			// in the build without -race (.ci/run runs it so); the relay
			// SIGKILL runs in both.
			t.Log("race build: RabbitMQ restart left to the run without -race (watermill-amqp reconnect race)")
			sagaOverBroker(t, srv.URL, nil)
			return
		}
		sagaOverBroker(t, srv.URL, func(whileDown func()) {
			srv.Stop()
			whileDown()
			srv.Start()
		})
	})
}

// sagaOverBroker runs the scenario on the broker at brokerURL. restart, when
// not nil, takes the broker down, calls whileDown, and brings the broker back.
func sagaOverBroker(t *testing.T, brokerURL string, restart func(whileDown func())) {
	dir := t.TempDir()
	storePath := filepath.Join(dir, "events.db")
	store, err := sqlite.Open(context.Background(), sqlite.Config{Path: storePath, PollInterval: 20 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	w := newWorldOn(t, store)
	rsrv := redistest.Start(t)
	rdb := rsrv.Client(t)

	topic := brokertest.Name("eventline.events.")
	group := brokertest.Name("saga")
	poison := brokertest.Name("eventline.saga.poison.")
	b, err := broker.Open(broker.Config{URL: brokerURL, Group: group, AckWait: 10 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	sub := &countingSubscriber{Subscriber: b.Subscriber(), seen: map[string]int{}}
	dedup, err := consume.NewRedisDedup(consume.RedisDedupConfig{Redis: rdb, Prefix: brokertest.Name("el:test:dedup:") + ":"})
	if err != nil {
		t.Fatal(err)
	}
	startSaga(t, saga.Config{Store: store, Registry: w.reg, Subscriber: sub, Publisher: b.Publisher(),
		Topics: []string{topic}, PoisonTopic: poison,
		Dedup:      dedup,
		MaxRetries: 20, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: quiet})

	// Each customer's credit covers two orders of 399 cents, not three.
	const customers, ordersEach = 6, 3
	for c := range customers {
		w.register(fmt.Sprintf("c%d", c), 1000)
	}
	var orders []string
	checkout := func(round, from, to int) {
		for c := from; c < to; c++ {
			id := fmt.Sprintf("%d-%d", c, round)
			w.checkout("k"+id, fmt.Sprintf("c%d", c), "o"+id)
			orders = append(orders, "o"+id)
		}
	}
	// An order is final once confirmed, or rejected and its cart reopened:
	// the compensation follows the rejection, and checkExactlyOnce counts it.
	final := func(id string) bool {
		switch w.order(id).Status {
		case order.StatusConfirmed:
			return true
		case order.StatusRejected:
			_, events := w.stream("cart-k" + strings.TrimPrefix(id, "o"))
			for _, e := range events {
				if _, ok := e.(cart.Reopened); ok {
					return true
				}
			}
		}
		return false
	}
	env := []string{envChildStore + "=" + storePath, envChildRedis + "=" + rsrv.Addr,
		envChildBroker + "=" + brokerURL, envChildTopic + "=" + topic, envChildGroup + "=" + group}

	// Round 0 through the first relay process, killed once the saga has
	// finished some orders and while the rest are in flight.
	relay1 := startRelayProcess(t, env...)
	checkout(0, 0, customers)
	waitFor(t, "a first order finished", func() bool { return final(orders[0]) })
	relay1.kill()

	// Round 1 is written while no relay runs; a second relay process resumes
	// from the checkpoint the first one saved, publishing again what the
	// first published after it.
	checkout(1, 0, customers)
	startRelayProcess(t, env...)
	waitFor(t, "round 1 under way", func() bool { return final(orders[len(orders)-1]) })

	// Round 2 meets a broker restart while the saga and the relay work: half
	// of its carts are checked out just before the broker goes, their saga
	// steps in flight, the other half while it is down, so that their every
	// step passes through the broker after its restart.
	checkout(2, 0, customers/2)
	if restart != nil {
		restart(func() {
			done := 0
			for _, id := range orders[len(orders)-customers/2:] {
				if final(id) {
					done++
				}
			}
			t.Logf("broker down with %d of the first %d orders of round 2 finished", done, customers/2)
			checkout(2, customers/2, customers)
		})
	} else {
		checkout(2, customers/2, customers)
	}

	for _, id := range orders {
		waitFor(t, "order "+id+" confirmed or rejected", func() bool { return final(id) })
	}
	waitFor(t, "the relay's checkpoint at the head of the log", func() bool {
		head := w.head()
		s, err := rdb.Get(context.Background(), childCheckpointKey).Result()
		if err != nil {
			return false
		}
		p, err := eventstore.ParsePosition(s)
		return err == nil && p == head
	})
	checkExactlyOnce(t, w, customers, ordersEach)

	// Every event the saga reacts to reached it at least once.
	want := map[string]bool{}
	for _, typ := range saga.EventTypes() {
		want[typ] = true
	}
	events, deliveries := 0, 0
	for rec, err := range store.ReadAll(context.Background(), eventstore.Start) {
		if err != nil {
			t.Fatal(err)
		}
		if !want[rec.Type] {
			continue
		}
		events++
		n := sub.delivered(rec.ID.String())
		deliveries += n
		if n == 0 {
			t.Errorf("event %s (%s of %s) never delivered", rec.ID, rec.Type, rec.StreamID)
		}
	}
	t.Logf("%d saga events, %d deliveries (%d redelivered or re-published, absorbed)", events, deliveries, deliveries-events)
}

// countingSubscriber counts the deliveries of each message UUID.
type countingSubscriber struct {
	message.Subscriber
	mu   sync.Mutex
	seen map[string]int
}

func (c *countingSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	in, err := c.Subscriber.Subscribe(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	go func() {
		defer close(out)
		for m := range in {
			c.mu.Lock()
			c.seen[m.UUID]++
			c.mu.Unlock()
			select {
			case out <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func (c *countingSubscriber) delivered(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[id]
}

// checkExactlyOnce checks that every saga step is in the log once.
func checkExactlyOnce(t *testing.T, w *world, customers, ordersEach int) {
	t.Helper()
	for c := range customers {
		cid := fmt.Sprintf("c%d", c)
		confirmed := 0
		for round := range ordersEach {
			id := fmt.Sprintf("%d-%d", c, round)
			_, events := w.stream("order-o" + id)
			if len(events) != 2 {
				t.Errorf("order o%s has %d events %T, want placed + confirmed or rejected", id, len(events), events)
				continue
			}
			reserved, refused := w.reservations(cid, "o"+id)
			_, cartEvents := w.stream("cart-k" + id)
			reopened := 0
			for _, e := range cartEvents {
				if _, ok := e.(cart.Reopened); ok {
					reopened++
				}
			}
			switch events[1].(type) {
			case order.Confirmed:
				confirmed++
				if reserved != 1 || refused != 0 || reopened != 0 {
					t.Errorf("confirmed order o%s: %d reservations, %d refusals, cart reopened %d times; want 1, 0, 0", id, reserved, refused, reopened)
				}
			case order.Rejected:
				if reserved != 0 || refused != 1 || reopened != 1 {
					t.Errorf("rejected order o%s: %d reservations, %d refusals, cart reopened %d times; want 0, 1, 1", id, reserved, refused, reopened)
				}
			default:
				t.Errorf("order o%s ends with %T", id, events[1])
			}
		}
		if confirmed != 2 {
			t.Errorf("customer %s has %d confirmed orders, want 2 (credit for two)", cid, confirmed)
		}
		_, events := w.stream("customer-" + cid)
		for _, e := range events {
			if _, ok := e.(customer.CreditReleased); ok {
				t.Errorf("customer %s: credit released, but no order was rejected after a reservation", cid)
			}
		}
	}
}

package consume_test

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/eventline/eventline/relay/consume"
)

// brokerBlip fails its first failures Publish calls, as a broker that is
// briefly unreachable does, and passes the others on.
type brokerBlip struct {
	message.Publisher
	failures  atomic.Int32
	published atomic.Int32
}

var errBrokerDown = errors.New("broker unreachable")

func (p *brokerBlip) Publish(topic string, msgs ...*message.Message) error {
	if p.failures.Add(-1) >= 0 {
		return errBrokerDown
	}
	if err := p.Publisher.Publish(topic, msgs...); err != nil {
		return err
	}
	p.published.Add(int32(len(msgs)))
	return nil
}

// A handler that produces messages, under NewRouter with de-duplication: the
// router publishes the produced messages after the handler returned. When that
// publish fails, the event must not count as handled, or its redelivery is
// dropped as a duplicate and the produced messages are lost for good.
func TestDeduplicatedHandlerOutputSurvivesAFailedPublish(t *testing.T) {
	for name, store := range dedupStores(t) {
		t.Run(name, func(t *testing.T) {
			ps := orderedChannel(t)
			out := collect(t, ps, "orders.out")
			flaky := &brokerBlip{Publisher: ps}
			flaky.failures.Store(1)
			r, err := consume.NewRouter(consume.RouterConfig{
				Dedup: store, PoisonPublisher: ps, PoisonTopic: "poison",
				MaxRetries: 1, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond,
				Logger: slog.New(slog.DiscardHandler),
			})
			if err != nil {
				t.Fatal(err)
			}
			var runs atomic.Int32
			r.AddHandler("forward", "orders.in", ps, "orders.out", flaky, func(msg *message.Message) ([]*message.Message, error) {
				runs.Add(1)
				return []*message.Message{message.NewMessage(msg.UUID+"-out", msg.Payload)}, nil
			})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
			<-r.Running()

			in := relayedMessage(t)
			// GoChannel's Publish returns once the router acked the message,
			// after however many nacks and redeliveries; the produced message
			// is delivered (and acked by the collector) before that ack.
			if err := ps.Publish("orders.in", in); err != nil {
				t.Fatal(err)
			}
			if n := out.len(); n != 1 {
				t.Fatalf("%d produced messages arrived after the event was acked, want 1 (handler ran %d times, %d published)",
					n, runs.Load(), flaky.published.Load())
			}
			if n := runs.Load(); n != 2 {
				t.Fatalf("handler ran %d times, want 2 (its first output was not published)", n)
			}
			// Once the output is published, the event is handled: a duplicate
			// is dropped without producing anything.
			if err := ps.Publish("orders.in", in.Copy()); err != nil {
				t.Fatal(err)
			}
			if n, m := runs.Load(), out.len(); n != 2 || m != 1 {
				t.Fatalf("a duplicate after the output was published: handler ran %d times, %d outputs; want 2 and 1", n, m)
			}
		})
	}
}

// Deduplicate alone cannot see the router publish, so it refuses to mark done
// an event whose handler produced messages, and releases the claim so that
// the redelivery is handled again.
func TestDeduplicateRefusesProducedMessages(t *testing.T) {
	for name, store := range dedupStores(t) {
		t.Run(name, func(t *testing.T) {
			var runs atomic.Int32
			h := consume.Deduplicate(store)(func(msg *message.Message) ([]*message.Message, error) {
				runs.Add(1)
				return []*message.Message{message.NewMessage(msg.UUID+"-out", nil)}, nil
			})
			msg := relayedMessage(t)
			for i := range 2 {
				if _, err := h(msg.Copy()); !errors.Is(err, consume.ErrProducedMessages) {
					t.Fatalf("delivery %d: %v, want ErrProducedMessages", i, err)
				}
			}
			if n := runs.Load(); n != 2 {
				t.Fatalf("handler ran %d times, want 2: a refused event must stay unhandled", n)
			}
		})
	}
}

// Between the handler's return and the publish of what it produced, the event
// stays claimed: a concurrent delivery is nacked, not handled again nor
// dropped as done.
func TestDeduplicatorHoldsTheClaimUntilTheOutputIsPublished(t *testing.T) {
	for name, store := range dedupStores(t) {
		t.Run(name, func(t *testing.T) {
			d := consume.NewDeduplicator(store)
			sink := &brokerBlip{Publisher: orderedChannel(t)}
			pub, err := d.DecoratePublisher(sink)
			if err != nil {
				t.Fatal(err)
			}
			var runs atomic.Int32
			h := d.Middleware(func(msg *message.Message) ([]*message.Message, error) {
				runs.Add(1)
				return []*message.Message{message.NewMessage(msg.UUID+"-a", nil), message.NewMessage(msg.UUID+"-b", nil)}, nil
			})
			msg := relayedMessage(t)
			out, err := h(msg.Copy())
			if err != nil || len(out) != 2 {
				t.Fatalf("first delivery: %d messages, %v", len(out), err)
			}
			if _, err := h(msg.Copy()); !errors.Is(err, consume.ErrInProgress) {
				t.Fatalf("delivery before the output was published: %v, want ErrInProgress", err)
			}
			sink.failures.Store(1)
			if err := pub.Publish("out", out...); !errors.Is(err, errBrokerDown) {
				t.Fatalf("publish: %v, want the broker's error", err)
			}
			// The failed publish released the claim: the redelivery runs the
			// handler again.
			out, err = h(msg.Copy())
			if err != nil || runs.Load() != 2 {
				t.Fatalf("redelivery after the failed publish: err %v, handler ran %d times; want it handled again", err, runs.Load())
			}
			if err := pub.Publish("out", out...); err != nil {
				t.Fatal(err)
			}
			if out, err := h(msg.Copy()); err != nil || len(out) != 0 || runs.Load() != 2 {
				t.Fatalf("delivery after the output was published: %d messages, err %v, handler ran %d times; want dropped", len(out), err, runs.Load())
			}
		})
	}
}

// A plain watermill router with a Deduplicator added keeps a handler's output
// through a failed publish, as NewRouter's does.
func TestDeduplicatorAddedToARouterKeepsOutputThroughAFailedPublish(t *testing.T) {
	ps := orderedChannel(t)
	out := collect(t, ps, "orders.out")
	blip := &brokerBlip{Publisher: ps}
	blip.failures.Store(2)
	r, err := message.NewRouter(message.RouterConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	consume.NewDeduplicator(memoryDedup(t)).AddTo(r)
	var runs atomic.Int32
	r.AddHandler("forward", "orders.in", ps, "orders.out", blip, func(msg *message.Message) ([]*message.Message, error) {
		runs.Add(1)
		return []*message.Message{message.NewMessage(msg.UUID+"-out", msg.Payload)}, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-r.Running()

	in := relayedMessage(t)
	for range 2 {
		if err := ps.Publish("orders.in", in.Copy()); err != nil {
			t.Fatal(err)
		}
	}
	if n, m := runs.Load(), out.len(); n != 3 || m != 1 {
		t.Fatalf("handler ran %d times, %d outputs arrived; want 3 (two publishes failed) and 1", n, m)
	}
}

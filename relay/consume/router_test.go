package consume_test

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/relay/consume"
)

func TestRouterPoisonsAPermanentlyFailingMessageAfterRetries(t *testing.T) {
	// Publish returns once the handler acked, so each step below is complete
	// when the next starts.
	ps := orderedChannel(t)
	poisoned := collect(t, ps, "poison")
	r, err := consume.NewRouter(consume.RouterConfig{
		Dedup: memoryDedup(t), PoisonPublisher: ps, PoisonTopic: "poison",
		MaxRetries: 3, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	var failing, panicking, good atomic.Int32
	r.AddConsumerHandler("failing", "orders.bad", ps, func(*message.Message) error {
		failing.Add(1)
		return errors.New("credit service says no")
	})
	r.AddConsumerHandler("panicking", "orders.panic", ps, func(*message.Message) error {
		panicking.Add(1)
		panic("handler bug")
	})
	r.AddConsumerHandler("good", "orders.good", ps, func(*message.Message) error {
		good.Add(1)
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-r.Running()

	bad, boom, ok := relayedMessage(t), relayedMessage(t), relayedMessage(t)
	for _, p := range []struct {
		topic string
		msg   *message.Message
	}{{"orders.bad", bad}, {"orders.panic", boom}, {"orders.good", ok}} {
		if err := ps.Publish(p.topic, p.msg); err != nil {
			t.Fatal(err)
		}
	}
	// The same event delivered again is handled once.
	if err := ps.Publish("orders.good", ok.Copy()); err != nil {
		t.Fatal(err)
	}
	if n := good.Load(); n != 1 {
		t.Fatalf("good handler ran %d times for one event delivered twice", n)
	}
	if n := poisoned.len(); n != 2 {
		t.Fatalf("%d poisoned messages, want 2", n)
	}
	if n := failing.Load(); n != 4 {
		t.Fatalf("failing handler ran %d times, want 1 + 3 retries", n)
	}
	if n := panicking.Load(); n != 4 {
		t.Fatalf("panicking handler ran %d times, want 1 + 3 retries", n)
	}
	byID := map[string]*message.Message{}
	poisoned.mu.Lock()
	for _, m := range poisoned.msgs {
		byID[m.Metadata.Get(relay.MetaEventID)] = m
	}
	poisoned.mu.Unlock()
	for _, want := range []*message.Message{bad, boom} {
		m := byID[want.UUID]
		if m == nil {
			t.Fatalf("event %s not in the poison topic", want.UUID)
		}
		if m.Metadata.Get(middleware.ReasonForPoisonedKey) == "" {
			t.Fatalf("poisoned message %s has no reason", want.UUID)
		}
		if _, err := consume.RecordFrom(m); err != nil {
			t.Fatalf("poisoned message lost the relay metadata: %v", err)
		}
	}
	// A poisoned event counts as handled: a redelivery is dropped, not retried.
	if err := ps.Publish("orders.bad", bad.Copy()); err != nil {
		t.Fatal(err)
	}
	if n := failing.Load(); n != 4 || poisoned.len() != 2 {
		t.Fatalf("redelivered poisoned event ran the handler again (%d runs, %d poisoned)", n, poisoned.len())
	}
}

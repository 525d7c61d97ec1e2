package consume

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// recordingPublisher remembers what was published to it.
type recordingPublisher struct {
	mu   sync.Mutex
	msgs []*message.Message
}

func (p *recordingPublisher) Publish(_ string, msgs ...*message.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, msgs...)
	return nil
}

func (p *recordingPublisher) Close() error { return nil }

func (p *recordingPublisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.msgs)
}

func chain(t *testing.T, pub message.Publisher, maxRetries int, h message.HandlerFunc) message.HandlerFunc {
	t.Helper()
	cfg := RouterConfig{PoisonPublisher: pub, PoisonTopic: "poison", MaxRetries: maxRetries,
		MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}
	mws, err := routerMiddleware(cfg, nil, watermill.NewSlogLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

func TestRouterNacksInsteadOfPoisoningWhenInterrupted(t *testing.T) {
	pub := &recordingPublisher{}
	ctx, cancel := context.WithCancel(context.Background())
	attempts := 0
	h := chain(t, pub, 5, func(msg *message.Message) ([]*message.Message, error) {
		attempts++
		cancel() // the router closes while the first attempt runs
		return nil, errors.New("store unavailable")
	})
	msg := message.NewMessage(watermill.NewUUID(), nil)
	msg.SetContext(ctx)
	if _, err := h(msg); err == nil {
		t.Fatal("an interrupted message was acked; want a nack so it is redelivered")
	}
	if n := pub.count(); n != 0 {
		t.Fatalf("%d messages poisoned; an interrupted message must not be poisoned", n)
	}
	if attempts != 1 {
		t.Fatalf("%d attempts after the context ended; want 1", attempts)
	}
}

func TestRouterPoisonsPermanentErrorsWithoutRetrying(t *testing.T) {
	pub := &recordingPublisher{}
	attempts := 0
	h := chain(t, pub, 5, func(*message.Message) ([]*message.Message, error) {
		attempts++
		return nil, Permanent(errors.New("malformed payload"))
	})
	if _, err := h(message.NewMessage(watermill.NewUUID(), nil)); err != nil {
		t.Fatalf("poisoned message should be acked, got %v", err)
	}
	if attempts != 1 || pub.count() != 1 {
		t.Fatalf("attempts = %d, poisoned = %d; want 1 and 1", attempts, pub.count())
	}
}

func TestRouterRetriesTransientErrorsThenPoisons(t *testing.T) {
	pub := &recordingPublisher{}
	attempts := 0
	h := chain(t, pub, 3, func(*message.Message) ([]*message.Message, error) {
		attempts++
		return nil, errors.New("transient")
	})
	if _, err := h(message.NewMessage(watermill.NewUUID(), nil)); err != nil {
		t.Fatalf("poisoned message should be acked, got %v", err)
	}
	if attempts != 4 || pub.count() != 1 {
		t.Fatalf("attempts = %d, poisoned = %d; want 4 (1 + 3 retries) and 1", attempts, pub.count())
	}
}

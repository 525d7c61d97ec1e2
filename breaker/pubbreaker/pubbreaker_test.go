package pubbreaker_test

import (
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/eventline/eventline/breaker"
	"github.com/eventline/eventline/breaker/pubbreaker"
)

// TestClosedBrokerOpens publishes to a GoChannel that was closed (a broker
// that is gone): publishes fail, the breaker opens, then they fail fast
// without reaching the broker.
func TestClosedBrokerOpens(t *testing.T) {
	ch := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	b := breaker.Must(breaker.Config{Name: "broker", Failures: 2, OpenFor: time.Hour})
	pub, err := pubbreaker.Wrap(ch, b)
	if err != nil {
		t.Fatal(err)
	}
	msg := func() *message.Message { return message.NewMessage(watermill.NewUUID(), []byte("x")) }
	if err := pub.Publish("t", msg()); err != nil {
		t.Fatal(err)
	}
	_ = ch.Close()
	for i := 0; i < 2; i++ {
		if err := pub.Publish("t", msg()); err == nil || errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("publish %d to a closed broker: %v, want its own error", i, err)
		}
	}
	if err := pub.Publish("t", msg()); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("publish with the breaker open: %v, want ErrOpen", err)
	}
	if _, err := pubbreaker.Wrap(nil, b); err == nil {
		t.Fatal("Wrap(nil) accepted")
	}
}

package relay_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/relay/consume"
)

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

// appendEvents appends n events spread over streams, with metadata, and returns
// the records as the store holds them.
func appendEvents(t testing.TB, s eventstore.Store, n, streams int, tag string) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		stream := fmt.Sprintf("order-%s-%d", tag, i%streams)
		typ := "order.placed"
		if i%3 == 1 {
			typ = "order.confirmed"
		}
		_, err := s.Append(ctx, stream, eventstore.Any, eventstore.Event{
			Type: typ,
			Data: fmt.Appendf(nil, `{"n":%d}`, i),
			Metadata: eventstore.Metadata{
				CorrelationID: fmt.Sprintf("corr-%d", i),
				CausationID:   fmt.Sprintf("cause-%d", i),
				Headers:       map[string]string{"tenant": "t1", "i": fmt.Sprint(i)},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func allRecords(t testing.TB, s eventstore.Store) []eventstore.Record {
	t.Helper()
	var out []eventstore.Record
	for rec, err := range s.ReadAll(context.Background(), eventstore.Start) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
	return out
}

// collector subscribes to a topic and keeps every message it receives, acking
// each.
type collector struct {
	mu   sync.Mutex
	msgs []*message.Message
}

func collect(t testing.TB, sub message.Subscriber, topic string) *collector {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ch {
			c.mu.Lock()
			c.msgs = append(c.msgs, m)
			c.mu.Unlock()
			m.Ack()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func (c *collector) records(t testing.TB) []eventstore.Record {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]eventstore.Record, len(c.msgs))
	for i, m := range c.msgs {
		rec, err := consume.RecordFrom(m)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = rec
	}
	return out
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// orderedChannel is a GoChannel that keeps order: Publish waits for the
// subscriber's ack before sending the next message.
func orderedChannel(t testing.TB) *gochannel.GoChannel {
	g := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, nil)
	t.Cleanup(func() { _ = g.Close() })
	return g
}

// runRelay runs r until the returned stop is called (or the test ends).
func runRelay(t testing.TB, r *relay.Relay) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-errc })
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func sameRecord(t testing.TB, got, want eventstore.Record) {
	t.Helper()
	if got.ID != want.ID || got.Type != want.Type || got.StreamID != want.StreamID ||
		got.Version != want.Version || got.Position != want.Position ||
		!got.RecordedAt.Equal(want.RecordedAt) || string(got.Data) != string(want.Data) ||
		got.Metadata.CorrelationID != want.Metadata.CorrelationID ||
		got.Metadata.CausationID != want.Metadata.CausationID ||
		len(got.Metadata.Headers) != len(want.Metadata.Headers) {
		t.Fatalf("record differs:\n got  %+v\n want %+v", got, want)
	}
	for k, v := range want.Metadata.Headers {
		if got.Metadata.Headers[k] != v {
			t.Fatalf("header %q = %q, want %q", k, got.Metadata.Headers[k], v)
		}
	}
}

func newStore(t testing.TB) *memory.Store {
	s := memory.New()
	t.Cleanup(func() { _ = s.Close() })
	return s
}

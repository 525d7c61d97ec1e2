package relay_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/relay"
	"github.com/redis/go-redis/v9"
)

// benchEvents is how many events each benchmark iteration relays.
const benchEvents = 100_000

func benchStore(b *testing.B) (eventstore.Store, []eventstore.Record) {
	s := newStore(b)
	ctx := context.Background()
	batch := make([]eventstore.Event, 100)
	for i := range benchEvents / len(batch) {
		for j := range batch {
			batch[j] = eventstore.Event{Type: "order.placed", Data: []byte(`{"total":30,"items":3}`),
				Metadata: eventstore.Metadata{CorrelationID: "c"}}
		}
		if _, err := s.Append(ctx, fmt.Sprintf("order-%d", i), eventstore.NoStream, batch...); err != nil {
			b.Fatal(err)
		}
	}
	return s, allRecords(b, s)
}

// relayAll runs a fresh relay from the start of the log until its checkpoint
// reaches the head, and reports events/s.
func relayAll(b *testing.B, store eventstore.Store, pub message.Publisher, topic func(int) string, batchSize int) {
	head, err := store.Head(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	var elapsed time.Duration
	for i := 0; b.Loop(); i++ {
		r, err := relay.New(relay.Config{Store: store, Publisher: pub, Checkpoint: &relay.MemoryCheckpoint{},
			Topic: topic(i), BatchSize: batchSize})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		stop := runRelay(b, r)
		waitFor(b, "relay at head", func() bool { return r.Status().Position == head })
		elapsed += time.Since(start)
		if err := stop(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchEvents)/elapsed.Seconds(), "events/s")
}

// rawPublish publishes the records' messages straight to pub, batchSize per
// call: the transport's ceiling without the relay.
func rawPublish(b *testing.B, recs []eventstore.Record, pub message.Publisher, topic func(int) string, batchSize int) {
	var elapsed time.Duration
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		for j := 0; j < len(recs); j += batchSize {
			run := recs[j:min(j+batchSize, len(recs))]
			msgs := make([]*message.Message, len(run))
			for k, rec := range run {
				msgs[k] = relay.NewMessage(context.Background(), rec)
			}
			if err := pub.Publish(topic(i), msgs...); err != nil {
				b.Fatal(err)
			}
		}
		elapsed += time.Since(start)
	}
	b.ReportMetric(float64(b.N*benchEvents)/elapsed.Seconds(), "events/s")
}

func BenchmarkRelayGoChannel(b *testing.B) {
	store, recs := benchStore(b)
	fixed := func(int) string { return "orders" }
	for _, c := range []struct {
		name string
		cfg  gochannel.Config
	}{
		{"ordered", gochannel.Config{BlockPublishUntilSubscriberAck: true}},
		{"unordered", gochannel.Config{OutputChannelBuffer: 1024}},
	} {
		ps := gochannel.NewGoChannel(c.cfg, nil)
		b.Cleanup(func() { _ = ps.Close() })
		got := collect(b, ps, "orders")
		b.Run(c.name+"/relay", func(b *testing.B) {
			relayAll(b, store, ps, fixed, relay.DefaultBatchSize)
			waitFor(b, "subscriber drained", func() bool { return got.len() >= b.N*benchEvents })
		})
		b.Run(c.name+"/raw-publish", func(b *testing.B) { rawPublish(b, recs, ps, fixed, relay.DefaultBatchSize) })
	}
}

func BenchmarkRelayRedisStreams(b *testing.B) {
	srv := redistest.Start(b)
	store, recs := benchStore(b)
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{
		Client: redis.NewClient(&redis.Options{Addr: srv.Addr})}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = pub.Close() })
	client := srv.Client(b)
	n := 0
	// A fresh stream per iteration keeps Redis memory flat; it is deleted after.
	topic := func(int) string {
		n++
		t := fmt.Sprintf("bench-%d", n)
		b.Cleanup(func() { client.Del(context.Background(), t) })
		return t
	}
	b.Run("relay", func(b *testing.B) { relayAll(b, store, pub, topic, relay.DefaultBatchSize) })
	b.Run("raw-publish", func(b *testing.B) { rawPublish(b, recs, pub, topic, relay.DefaultBatchSize) })
	// The relay's own publisher: one pipeline per Publish call.
	pipelined, err := relay.NewRedisStreamsPublisher(client, relay.RedisStreamsConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("relay-pipelined", func(b *testing.B) { relayAll(b, store, pipelined, topic, relay.DefaultBatchSize) })
	b.Run("raw-publish-pipelined", func(b *testing.B) { rawPublish(b, recs, pipelined, topic, relay.DefaultBatchSize) })
	// The ceiling below watermill: pipelined XADDs of the same fields, one
	// round trip per batch (watermill's publisher does one per message).
	b.Run("raw-xadd-pipelined", func(b *testing.B) {
		var elapsed time.Duration
		m := redisstream.DefaultMarshallerUnmarshaller{}
		for i := 0; b.Loop(); i++ {
			t := topic(i)
			start := time.Now()
			for j := 0; j < len(recs); j += relay.DefaultBatchSize {
				p := client.Pipeline()
				for _, rec := range recs[j:min(j+relay.DefaultBatchSize, len(recs))] {
					values, err := m.Marshal(t, relay.NewMessage(context.Background(), rec))
					if err != nil {
						b.Fatal(err)
					}
					p.XAdd(context.Background(), &redis.XAddArgs{Stream: t, Values: values})
				}
				if _, err := p.Exec(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			elapsed += time.Since(start)
		}
		b.ReportMetric(float64(b.N*benchEvents)/elapsed.Seconds(), "events/s")
	})
}

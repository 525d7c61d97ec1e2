package broker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/brokertest"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/relay/broker"
)

// benchEvents is how many events each benchmark iteration publishes.
const benchEvents = 5_000

func benchStore(b *testing.B) (eventstore.Store, []eventstore.Record) {
	s := memory.New()
	b.Cleanup(func() { _ = s.Close() })
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
	var recs []eventstore.Record
	for rec, err := range s.ReadAll(ctx, eventstore.Start) {
		if err != nil {
			b.Fatal(err)
		}
		recs = append(recs, rec)
	}
	return s, recs
}

// relayAll runs a fresh relay from the start of the log until its checkpoint
// reaches the head, and reports events/s.
func relayAll(b *testing.B, store eventstore.Store, pub message.Publisher, topic string) {
	head, err := store.Head(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	var elapsed time.Duration
	for b.Loop() {
		r, err := relay.New(relay.Config{Store: store, Publisher: pub, Checkpoint: &relay.MemoryCheckpoint{},
			Topic: topic, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		start := time.Now()
		go func() { errc <- r.Run(ctx) }()
		waitFor(b, "relay at head", func() bool { return r.Status().Position == head })
		elapsed += time.Since(start)
		cancel()
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchEvents)/elapsed.Seconds(), "events/s")
}

// rawPublish publishes the records' messages straight to pub in batches of
// the relay's default size: the transport's ceiling, no eventline code on the
// path but building the messages.
func rawPublish(b *testing.B, recs []eventstore.Record, pub message.Publisher, topic string) {
	var elapsed time.Duration
	for b.Loop() {
		start := time.Now()
		for j := 0; j < len(recs); j += relay.DefaultBatchSize {
			run := recs[j:min(j+relay.DefaultBatchSize, len(recs))]
			msgs := make([]*message.Message, len(run))
			for k, rec := range run {
				msgs[k] = relay.NewMessage(context.Background(), rec)
			}
			if err := pub.Publish(topic, msgs...); err != nil {
				b.Fatal(err)
			}
		}
		elapsed += time.Since(start)
	}
	b.ReportMetric(float64(b.N*benchEvents)/elapsed.Seconds(), "events/s")
}

// BenchmarkPublishNATS: the relay over broker.Open's JetStream publisher
// against watermill-nats's own publisher on the same stream, with the same
// settings (JetStream acks, Nats-Msg-Id). Each message is a new event id, so
// JetStream's duplicate detection drops nothing.
func BenchmarkPublishNATS(b *testing.B) {
	url := brokertest.NATSURL(b)
	store, recs := benchStore(b)
	topic := brokertest.Name("el.bench.")
	bk, err := broker.Open(broker.Config{URL: url, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bk.Close() })
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, _ := nc.JetStream()
	if _, err := js.AddStream(&nats.StreamConfig{Name: broker.StreamName(topic), Subjects: []string{topic}, Storage: nats.FileStorage}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = js.DeleteStream(broker.StreamName(topic)) })
	plain, err := wmnats.NewPublisher(wmnats.PublisherConfig{URL: url, JetStream: wmnats.JetStreamConfig{TrackMsgId: true}}, watermill.NopLogger{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = plain.Close() })
	b.Run("watermill-publisher", func(b *testing.B) { rawPublish(b, recs, plain, topic) })
	b.Run("relay", func(b *testing.B) { relayAll(b, store, bk.Publisher(), topic) })
}

// BenchmarkPublishAMQP: the relay over broker.Open's RabbitMQ publisher
// (persistent messages, one transaction per Publish call) against
// watermill-amqp's own durable pub/sub publisher: transactional as the
// relay's (and on one pooled channel instead of a channel per call), with a
// confirm per message (its other safe setting), and with its
// defaults (no confirms: a publish is done once written to the socket, which
// can lose messages).
func BenchmarkPublishAMQP(b *testing.B) {
	url := brokertest.AMQPURL(b)
	store, recs := benchStore(b)
	topic, group := brokertest.Name("el.bench."), brokertest.Name("g")
	bk, err := broker.Open(broker.Config{URL: url, Group: group, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bk.Close() })
	b.Cleanup(func() {
		conn, err := amqp091.Dial(url)
		if err != nil {
			return
		}
		defer conn.Close()
		if ch, err := conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(broker.AMQPQueueName(topic, group), false, false, false)
			_ = ch.ExchangeDelete(topic, false, false)
		}
	})
	// Declares the exchange and the queue: all publishers below reach it.
	if err := bk.Publisher().Publish(topic); err != nil {
		b.Fatal(err)
	}
	confirmed := wmamqp.NewDurablePubSubConfig(url, wmamqp.GenerateQueueNameTopicNameWithSuffix(group))
	confirmed.Publish.ConfirmDelivery = true
	confirmed.Publish.ChannelPoolSize = 1
	// As the relay's: a channel per Publish call.
	transactional := wmamqp.NewDurablePubSubConfig(url, wmamqp.GenerateQueueNameTopicNameWithSuffix(group))
	transactional.Publish.Transactional = true
	// One pooled channel, which relay/broker no longer uses (amqpConfig).
	pooled := transactional
	pooled.Publish.ChannelPoolSize = 1
	for name, cfg := range map[string]wmamqp.Config{
		"watermill-publisher-confirmed":            confirmed,
		"watermill-publisher-transactional":        transactional,
		"watermill-publisher-transactional-pooled": pooled,
		"watermill-publisher-defaults":             wmamqp.NewDurablePubSubConfig(url, wmamqp.GenerateQueueNameTopicNameWithSuffix(group)),
	} {
		plain, err := wmamqp.NewPublisher(cfg, watermill.NopLogger{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = plain.Close() })
		b.Run(name, func(b *testing.B) { rawPublish(b, recs, plain, topic) })
	}
	b.Run("relay", func(b *testing.B) { relayAll(b, store, bk.Publisher(), topic) })
}

// BenchmarkAMQPRestart stops a private RabbitMQ node and starts it again on
// its data, then measures, for clients connected before the stop, the time
// from the node accepting connections again to a message published after it
// being delivered: broker.Open's publisher and subscriber (reconnecting
// within AMQPReconnectMaxInterval) against watermill-amqp's with its default
// reconnection (back-off up to a minute), through the same restart, and a
// client that dials afresh once the node is back (the ceiling).
func BenchmarkAMQPRestart(b *testing.B) {
	srv := brokertest.StartRabbit(b)
	type client struct {
		name  string
		pub   message.Publisher
		topic string
		msgs  <-chan *message.Message
		total time.Duration
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	group := brokertest.Name("g")
	var clients []*client
	ours := func() (message.Publisher, message.Subscriber) {
		bk, err := broker.Open(broker.Config{URL: srv.URL, Group: group, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = bk.Close() })
		return bk.Publisher(), bk.Subscriber()
	}
	plain := func() (message.Publisher, message.Subscriber) {
		cfg := wmamqp.NewDurablePubSubConfig(srv.URL, wmamqp.GenerateQueueNameTopicNameWithSuffix(group))
		pub, err := wmamqp.NewPublisher(cfg, watermill.NopLogger{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = pub.Close() })
		sub, err := wmamqp.NewSubscriber(cfg, watermill.NopLogger{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = sub.Close() })
		return pub, sub
	}
	for _, c := range []struct {
		name string
		open func() (message.Publisher, message.Subscriber)
	}{{"broker.Open", ours}, {"watermill-amqp-defaults", plain}} {
		pub, sub := c.open()
		topic := brokertest.Name("el.bench.restart.")
		msgs, err := sub.Subscribe(ctx, topic)
		if err != nil {
			b.Fatal(err)
		}
		clients = append(clients, &client{name: c.name, pub: pub, topic: topic, msgs: msgs})
	}
	// roundTrip publishes a new message until a Publish succeeds, then waits
	// for its delivery.
	roundTrip := func(c *client) error {
		id := watermill.NewUUID()
		deadline := time.Now().Add(brokertest.RabbitStartTimeout)
		for {
			err := c.pub.Publish(c.topic, message.NewMessage(id, []byte("x")))
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: publish: %w", c.name, err)
			}
			time.Sleep(5 * time.Millisecond) // retry interval
		}
		timeout := time.After(time.Until(deadline))
		for {
			select {
			case m, ok := <-c.msgs:
				if !ok {
					return fmt.Errorf("%s: subscription closed", c.name)
				}
				m.Ack()
				if m.UUID == id {
					return nil
				}
			case <-timeout:
				return fmt.Errorf("%s: message %s not delivered", c.name, id)
			}
		}
	}
	// fresh dials the node, declares a durable queue, publishes a persistent
	// message to it in a transaction and takes it back.
	freshQueue := brokertest.Name("el.bench.restart.fresh.")
	fresh := func() error {
		conn, err := amqp091.Dial(srv.URL)
		if err != nil {
			return err
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		if _, err := ch.QueueDeclare(freshQueue, true, false, false, false, nil); err != nil {
			return err
		}
		if err := ch.Tx(); err != nil {
			return err
		}
		if err := ch.PublishWithContext(ctx, "", freshQueue, false, false, amqp091.Publishing{DeliveryMode: amqp091.Persistent, Body: []byte("x")}); err != nil {
			return err
		}
		if err := ch.TxCommit(); err != nil {
			return err
		}
		deliveries, err := ch.Consume(freshQueue, "", true, false, false, false, nil)
		if err != nil {
			return err
		}
		select {
		case <-deliveries:
			return nil
		case <-time.After(time.Minute):
			return errors.New("fresh client: no delivery")
		}
	}
	for _, c := range clients {
		if err := roundTrip(c); err != nil {
			b.Fatal(err)
		}
	}
	var freshTotal time.Duration
	for b.Loop() {
		srv.Stop()
		srv.Start()
		up := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, len(clients)+1)
		for _, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := roundTrip(c); err != nil {
					errs <- err
				}
				c.total += time.Since(up)
			}()
		}
		if err := fresh(); err != nil {
			errs <- err
		}
		freshTotal += time.Since(up)
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	for _, c := range clients {
		b.ReportMetric(c.total.Seconds()/float64(b.N), c.name+"-s/restart")
	}
	b.ReportMetric(freshTotal.Seconds()/float64(b.N), "fresh-client-s/restart")
}

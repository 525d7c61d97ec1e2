package broker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/eventline/eventline/internal/brokertest"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/relay/broker"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestValidateRefusesBadConfigs(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  broker.Config
		want string
	}{
		{"empty", broker.Config{}, "URL is required"},
		{"scheme", broker.Config{URL: "kafka://h:9092"}, `scheme "kafka"`},
		{"no host", broker.Config{URL: "nats://"}, "has no host"},
		{"not a URL", broker.Config{URL: "amqp://guest:secret@h:bad port/"}, "not a URL"},
		{"negative ack wait", broker.Config{URL: "nats://h:4222", AckWait: -time.Second}, "AckWait"},
		{"group", broker.Config{URL: "nats://h:4222", Group: "a b"}, "Group"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if !errors.Is(err, broker.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want ErrInvalidConfig saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("error repeats the password: %v", err)
			}
			if _, err := broker.Open(tc.cfg); !errors.Is(err, broker.ErrInvalidConfig) {
				t.Fatalf("Open() = %v, want ErrInvalidConfig", err)
			}
		})
	}
	for url, want := range map[string]string{"nats://h:1": "nats", "amqps://h": "amqp", "rediss://h:1": "redis", "redis://h:1/0": "redis",
		"redis+cluster://h:1?addr=h:2": "redis", "rediss+cluster://h:1": "redis"} {
		if got, err := broker.Scheme(url); err != nil || got != want {
			t.Errorf("Scheme(%q) = %q, %v; want %q", url, got, err, want)
		}
	}
}

func TestOpenFailsWhenTheBrokerDoesNotAnswer(t *testing.T) {
	// A closed loopback port: nothing listens there.
	p := brokertest.NewProxy(t, "127.0.0.1:1")
	p.Down()
	for _, url := range []string{"nats://" + p.Addr, "amqp://guest:guest@" + p.Addr + "/"} {
		b, err := broker.Open(broker.Config{URL: url, Logger: quiet})
		if err == nil {
			_ = b.Close()
			t.Fatalf("Open(%s) succeeded without a broker", url)
		}
		if strings.Contains(err.Error(), "guest:guest") {
			t.Errorf("error repeats the password: %v", err)
		}
	}
}

// brokerURLs returns each live broker's URL, by scheme.
func brokerURLs(t *testing.T) map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"nats":  func(t *testing.T) string { return brokertest.NATSURL(t) },
		"amqp":  func(t *testing.T) string { return brokertest.AMQPURL(t) },
		"redis": func(t *testing.T) string { return redistest.Start(t).URL },
		// Redis Streams on a Redis Cluster: the topic's stream lives on the
		// master of its slot, the group's reads follow it.
		"redis-cluster": func(t *testing.T) string { return redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3}).URL },
	}
}

func open(t *testing.T, cfg broker.Config) *broker.Broker {
	t.Helper()
	cfg.Logger = quiet
	b, err := broker.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// TestGroupDelivery publishes before any consumer subscribed, then has two
// consumers of one group take the messages: each message is handled by one of
// them, a nacked message comes back, and a second group gets every message
// too.
func TestGroupDelivery(t *testing.T) {
	for name, urlOf := range brokerURLs(t) {
		t.Run(name, func(t *testing.T) {
			url := urlOf(t)
			topic := brokertest.Name("el.test.delivery.")
			group, other := brokertest.Name("g"), brokertest.Name("h")
			const n = 40
			switch name {
			case "nats":
				brokertest.DeleteNATSStreams(t, url, broker.StreamName(topic))
			case "amqp":
				brokertest.DeleteAMQP(t, url, []string{broker.AMQPQueueName(topic, group), broker.AMQPQueueName(topic, other)}, []string{topic})
			}
			// On RabbitMQ the publisher declares its group's queue; the
			// other group's queue exists once that group subscribed.
			pub := open(t, broker.Config{URL: url, Group: group})
			ob := open(t, broker.Config{URL: url, Group: other})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			otherMsgs, err := ob.Subscriber().Subscribe(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				if err := pub.Publisher().Publish(topic, message.NewMessage(fmt.Sprintf("m-%02d", i), []byte("x"))); err != nil {
					t.Fatal(err)
				}
			}
			var mu sync.Mutex
			handled := map[string]int{}
			nacked := false
			var wg sync.WaitGroup
			consume := func(msgs <-chan *message.Message, handled map[string]int, nackOne bool) {
				defer wg.Done()
				for m := range msgs {
					mu.Lock()
					if nackOne && m.UUID == "m-07" && !nacked {
						nacked = true
						mu.Unlock()
						m.Nack()
						continue
					}
					handled[m.UUID]++
					mu.Unlock()
					m.Ack()
				}
			}
			for range 2 {
				b := open(t, broker.Config{URL: url, Group: group})
				msgs, err := b.Subscriber().Subscribe(ctx, topic)
				if err != nil {
					t.Fatal(err)
				}
				wg.Add(1)
				go consume(msgs, handled, true)
			}
			otherHandled := map[string]int{}
			wg.Add(1)
			go consume(otherMsgs, otherHandled, false)
			waitFor(t, "every message handled by both groups", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(handled) == n && len(otherHandled) == n
			})
			cancel()
			wg.Wait()
			if !nacked {
				t.Fatal("m-07 was never delivered to be nacked")
			}
			for i := range n {
				id := fmt.Sprintf("m-%02d", i)
				if handled[id] != 1 || otherHandled[id] != 1 {
					t.Errorf("%s handled %d times in the group, %d in the other; want once each", id, handled[id], otherHandled[id])
				}
			}
		})
	}
}

// waitFor polls cond until it holds, failing the test after the deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

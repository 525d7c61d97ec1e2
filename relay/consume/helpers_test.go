package consume_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/eventline/eventline/relay/consume"
	"github.com/redis/go-redis/v9"
)

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

func memoryDedup(t testing.TB) *consume.MemoryDedup {
	t.Helper()
	d, err := consume.NewMemoryDedup(consume.MemoryDedupConfig{DoneTTL: time.Hour, ClaimTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func redisDedup(t testing.TB, rdb redis.UniversalClient) *consume.RedisDedup {
	t.Helper()
	d, err := consume.NewRedisDedup(consume.RedisDedupConfig{Redis: rdb, Prefix: "el:dedup:test:", DoneTTL: time.Hour, ClaimTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

package relay_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/relay"
)

// gatedPublisher records what it publishes; while held, a Publish waits
// (after announcing itself on entered) until the gate opens.
type gatedPublisher struct {
	mu      sync.Mutex
	held    bool
	entered chan struct{}
	gate    chan struct{}
	since   []eventstore.Position // published since mark
}

func (p *gatedPublisher) Publish(_ string, msgs ...*message.Message) error {
	p.mu.Lock()
	held := p.held
	p.held = false
	p.mu.Unlock()
	if held {
		p.entered <- struct{}{}
		<-p.gate
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range msgs {
		pos, err := eventstore.ParsePosition(m.Metadata.Get(relay.MetaPosition))
		if err != nil {
			return err
		}
		p.since = append(p.since, pos)
	}
	return nil
}

func (p *gatedPublisher) Close() error { return nil }

func (p *gatedPublisher) published() map[eventstore.Position]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[eventstore.Position]bool{}
	for _, pos := range p.since {
		seen[pos] = true
	}
	return seen
}

// TestCheckpointIsFencedByTheLease restarts the relay's Redis empty while a
// batch is being published. The holder does not know yet that its lease is
// gone (its TTL is far from over), so without a fence it would write its
// position into the new Redis: the checkpoint would then claim records that
// were published into the old Redis's transport only, and a relay starting
// from it would never publish them again. The save must be refused, the
// relay must take the lease again and publish from the empty checkpoint.
func TestCheckpointIsFencedByTheLease(t *testing.T) {
	srv := redistest.Start(t)
	if srv.Kind == redistest.KindEnv {
		t.Skip("restarts the server: needs a private one")
	}
	client := srv.Client(t)
	store := newStore(t)
	appendEvents(t, store, 3, 1, "a")
	pub := &gatedPublisher{entered: make(chan struct{}), gate: make(chan struct{})}
	const cpKey, leaseKey = "{el:relay:fence}:checkpoint", "{el:relay:fence}:lease"
	lease, err := relay.NewRedisLease(relay.RedisLeaseConfig{Redis: client, Key: leaseKey, TTL: time.Minute, Owner: "a"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(fastRetry(relay.Config{Name: "fence", Store: store, Publisher: pub, Topic: topic, Lease: lease,
		Checkpoint: relay.NewRedisCheckpoint(client, cpKey)}))
	if err != nil {
		t.Fatal(err)
	}
	stop := runRelay(t, r)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	first := allRecords(t, store)
	waitFor(t, "the first records checkpointed", func() bool { return r.Status().Position == first[len(first)-1].Position })

	// The next batch is held inside Publish while Redis restarts empty.
	pub.mu.Lock()
	pub.held = true
	pub.mu.Unlock()
	appendEvents(t, store, 2, 1, "b")
	want := allRecords(t, store)
	head := want[len(want)-1].Position
	select {
	case <-pub.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the relay did not publish the second batch")
	}
	srv.Kill()
	srv.Restart()
	pub.mu.Lock()
	pub.since = nil // what the new Redis's transport would hold
	pub.mu.Unlock()
	close(pub.gate)

	// Whatever the new Redis's checkpoint says was published must have been
	// published since it was emptied.
	ctx := context.Background()
	waitFor(t, "a checkpoint in the new Redis", func() bool {
		s, err := client.Get(ctx, cpKey).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return false // reconnecting
		}
		if s == "" {
			return false
		}
		pos, err := eventstore.ParsePosition(s)
		if err != nil {
			t.Fatalf("checkpoint %q: %v", s, err)
		}
		seen := pub.published()
		for _, rec := range want {
			if !pos.Before(rec.Position) && !seen[rec.Position] {
				t.Fatalf("the new Redis's checkpoint is %v, but %v was not published since Redis was emptied", pos, rec.Position)
			}
		}
		return pos == head
	})
}

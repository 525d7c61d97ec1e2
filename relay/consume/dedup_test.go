package consume_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/redisurl"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/relay/consume"
	"github.com/google/uuid"
)

func dedupStores(t *testing.T) map[string]consume.DedupStore {
	srv := redistest.Start(t)
	// On a Redis Cluster each event's claim and done keys share a hash tag,
	// so the scripts that touch both run on one node.
	cluster, err := redisurl.Open(redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3}).URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Close() })
	return map[string]consume.DedupStore{
		"redis":         redisDedup(t, srv.Client(t)),
		"redis-cluster": redisDedup(t, cluster),
		"memory":        memoryDedup(t),
	}
}

func relayedMessage(t *testing.T) *message.Message {
	t.Helper()
	return relay.NewMessage(context.Background(), eventstore.Record{
		Event:    eventstore.Event{ID: uuid.New(), Type: "order.placed", Data: []byte(`{}`)},
		StreamID: "order-1", Version: 1, Position: eventstore.SeqPosition(1), RecordedAt: time.Now(),
	})
}

func TestDeduplicate(t *testing.T) {
	for name, store := range dedupStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("drops a redelivered message", func(t *testing.T) {
				var calls atomic.Int32
				h := consume.Deduplicate(store)(func(*message.Message) ([]*message.Message, error) {
					calls.Add(1)
					return nil, nil
				})
				msg := relayedMessage(t)
				for i := range 3 {
					if _, err := h(msg.Copy()); err != nil {
						t.Fatalf("delivery %d: %v", i, err)
					}
				}
				if n := calls.Load(); n != 1 {
					t.Fatalf("handler ran %d times for one event, want 1", n)
				}
				if _, err := h(relayedMessage(t)); err != nil || calls.Load() != 2 {
					t.Fatalf("another event: err %v, calls %d; want it handled", err, calls.Load())
				}
			})
			t.Run("keeps a message whose first handling failed", func(t *testing.T) {
				var calls atomic.Int32
				boom := errors.New("boom")
				h := consume.Deduplicate(store)(func(*message.Message) ([]*message.Message, error) {
					if calls.Add(1) == 1 {
						return nil, boom
					}
					return nil, nil
				})
				msg := relayedMessage(t)
				if _, err := h(msg.Copy()); !errors.Is(err, boom) {
					t.Fatalf("first delivery: %v, want boom", err)
				}
				if _, err := h(msg.Copy()); err != nil {
					t.Fatalf("redelivery: %v", err)
				}
				if _, err := h(msg.Copy()); err != nil {
					t.Fatal(err)
				}
				if n := calls.Load(); n != 2 {
					t.Fatalf("handler ran %d times, want 2 (failed, then succeeded, then dropped)", n)
				}
			})
			t.Run("nacks a concurrent delivery", func(t *testing.T) {
				msg := relayedMessage(t)
				entered, release := make(chan struct{}), make(chan struct{})
				var calls atomic.Int32
				h := consume.Deduplicate(store)(func(*message.Message) ([]*message.Message, error) {
					if calls.Add(1) == 1 {
						close(entered)
						<-release
					}
					return nil, nil
				})
				errc := make(chan error, 1)
				go func() { _, err := h(msg.Copy()); errc <- err }()
				<-entered
				if _, err := h(msg.Copy()); !errors.Is(err, consume.ErrInProgress) {
					t.Fatalf("concurrent delivery: %v, want ErrInProgress", err)
				}
				close(release)
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
				if _, err := h(msg.Copy()); err != nil || calls.Load() != 1 {
					t.Fatalf("after the first finished: err %v, calls %d; want dropped", err, calls.Load())
				}
			})
		})
	}
}

func TestRecordFromRejectsForeignMessages(t *testing.T) {
	msg := message.NewMessage("x", []byte("{}"))
	if _, err := consume.RecordFrom(msg); !errors.Is(err, consume.ErrNotRelayed) {
		t.Fatalf("RecordFrom: %v", err)
	}
	good := relayedMessage(t)
	good.Metadata.Set(relay.MetaVersion, "-1")
	if _, err := consume.RecordFrom(good); !errors.Is(err, consume.ErrNotRelayed) {
		t.Fatalf("RecordFrom with bad version: %v", err)
	}
	if _, err := consume.RecordFrom(nil); !errors.Is(err, consume.ErrNotRelayed) {
		t.Fatalf("RecordFrom(nil): %v", err)
	}
}

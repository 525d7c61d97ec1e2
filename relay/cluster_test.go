package relay_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/redisurl"
	"github.com/eventline/eventline/relay"
)

// TestClusterCheckpointFencedByLease runs the relay's Redis checkpoint and
// lease on a Redis Cluster. The fenced save is one Lua script over the
// checkpoint and lease keys, so both carry one hash tag; a pair without one
// is refused by the cluster (CROSSSLOT), never saved unfenced. A relay then
// publishes the whole log under the lease, and a save after a takeover is
// refused with ErrLeaseLost.
func TestClusterCheckpointFencedByLease(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3})
	client, err := redisurl.Open(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	ctx := context.Background()

	// Keys of different slots: the script cannot run.
	var cpKey, leaseKey string
	for i := 0; cpKey == ""; i++ {
		cp, lk := "el:relay:x"+strconv.Itoa(i)+":checkpoint", "el:relay:x"+strconv.Itoa(i)+":lease"
		if c.MasterOf(cp) != c.MasterOf(lk) {
			cpKey, leaseKey = cp, lk
		}
	}
	bad, err := relay.NewRedisLease(relay.RedisLeaseConfig{Redis: client, Key: leaseKey, TTL: time.Minute, Owner: "a"})
	if err != nil {
		t.Fatal(err)
	}
	held, release, err := bad.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.NewRedisCheckpoint(client, cpKey).Save(held, eventstore.SeqPosition(1)); err == nil {
		t.Fatalf("a fenced save over %s and %s (two slots) succeeded", cpKey, leaseKey)
	}
	release()

	// One hash tag: the relay forwards everything and checkpoints the head.
	const tagCP, tagLease = "{el:relay:cluster}:checkpoint", "{el:relay:cluster}:lease"
	store := newStore(t)
	appendEvents(t, store, 300, 5, "a")
	pub := &gatedPublisher{}
	l, err := relay.NewRedisLease(relay.RedisLeaseConfig{Redis: client, Key: tagLease, TTL: time.Second, Owner: "relay"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(fastRetry(relay.Config{Name: "cluster", Store: store, Publisher: pub, Topic: topic, Lease: l,
		BatchSize: 50, Checkpoint: relay.NewRedisCheckpoint(client, tagCP)}))
	if err != nil {
		t.Fatal(err)
	}
	stop := runRelay(t, r)
	want := allRecords(t, store)
	head := want[len(want)-1].Position
	waitFor(t, "the head checkpointed", func() bool { return r.Status().Position == head })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	seen := pub.published()
	for _, rec := range want {
		if !seen[rec.Position] {
			t.Fatalf("%v checkpointed but never published", rec.Position)
		}
	}
	cp := relay.NewRedisCheckpoint(client, tagCP)
	if got, err := cp.Load(ctx); err != nil || got != head {
		t.Fatalf("checkpoint %v, %v; want %v", got, err, head)
	}

	// A holding that another owner took over cannot save.
	mine, err := relay.NewRedisLease(relay.RedisLeaseConfig{Redis: client, Key: tagLease, TTL: time.Minute, Owner: "mine"})
	if err != nil {
		t.Fatal(err)
	}
	held, release, err = mine.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := client.HSet(ctx, tagLease, "owner", "thief", "token", "1000000",
		"expires", strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := cp.Save(held, eventstore.SeqPosition(1)); !errors.Is(err, relay.ErrLeaseLost) {
		t.Fatalf("save after a takeover: %v, want ErrLeaseLost", err)
	}
	if got, _ := cp.Load(ctx); got != head {
		t.Fatalf("a refused save moved the checkpoint to %v", got)
	}
}

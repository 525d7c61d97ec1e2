package relay_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/relay"
	"github.com/redis/go-redis/v9"
)

// countingHook counts the round trips that carry XADDs: single commands, and
// pipelines with the XADDs each carried. Connection set-up commands (HELLO,
// CLIENT SETINFO) are not counted.
type countingHook struct {
	mu        sync.Mutex
	singles   int
	pipelines []int
}

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "xadd" {
			h.mu.Lock()
			h.singles++
			h.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		n := 0
		for _, cmd := range cmds {
			if cmd.Name() == "xadd" {
				n++
			}
		}
		if n > 0 {
			h.mu.Lock()
			h.pipelines = append(h.pipelines, n)
			h.mu.Unlock()
		}
		return next(ctx, cmds)
	}
}

// testMessages returns n messages of several shapes: relayed events (many
// metadata keys), a message with no metadata and an empty payload, one with a
// single key and a binary payload.
func testMessages(t *testing.T, n int) []*message.Message {
	t.Helper()
	store := newStore(t)
	appendEvents(t, store, n, 3, "m")
	recs := allRecords(t, store)
	msgs := make([]*message.Message, n)
	for i, rec := range recs {
		switch i % 5 {
		case 1:
			msgs[i] = message.NewMessage(rec.ID.String(), nil)
		case 2:
			msgs[i] = message.NewMessage(rec.ID.String(), []byte{0, 0xff, '\n', byte(i)})
			msgs[i].Metadata.Set("only", fmt.Sprint(i))
		default:
			msgs[i] = relay.NewMessage(context.Background(), rec)
		}
	}
	return msgs
}

func publishInBatches(t *testing.T, pub message.Publisher, topic string, msgs []*message.Message, sizes ...int) {
	t.Helper()
	for i, k := 0, 0; i < len(msgs); k++ {
		end := min(i+sizes[k%len(sizes)], len(msgs))
		if err := pub.Publish(topic, msgs[i:end]...); err != nil {
			t.Fatal(err)
		}
		i = end
	}
}

func sameMessage(t *testing.T, i int, got, want *message.Message) {
	t.Helper()
	if got.UUID != want.UUID || string(got.Payload) != string(want.Payload) ||
		!maps.Equal(got.Metadata, want.Metadata) {
		t.Fatalf("message %d differs:\n got  %s %q %v\n want %s %q %v",
			i, got.UUID, got.Payload, got.Metadata, want.UUID, want.Payload, want.Metadata)
	}
}

func TestRedisStreamsPublisherIsReadByWatermillSubscriber(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	hook := &countingHook{}
	client.AddHook(hook)
	pub, err := relay.NewRedisStreamsPublisher(client, relay.RedisStreamsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	msgs := testMessages(t, 120)
	sizes := []int{1, 7, 50, 62}
	publishInBatches(t, pub, "el-compat", msgs, sizes...)

	// One round trip per Publish call, carrying every message of the call.
	if hook.singles != 0 || !slices.Equal(hook.pipelines, sizes) {
		t.Fatalf("round trips: %d single commands, pipelines of %v; want none and %v", hook.singles, hook.pipelines, sizes)
	}

	// The subscriber closes its client on Close.
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client: redis.NewClient(&redis.Options{Addr: srv.Addr}), ConsumerGroup: "compat", OldestId: "0",
		DisableIndefiniteInitialBlock: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	got := collect(t, sub, "el-compat")
	waitFor(t, "subscriber received every message", func() bool { return got.len() >= len(msgs) })
	got.mu.Lock()
	received := got.msgs
	got.mu.Unlock()
	if len(received) != len(msgs) {
		t.Fatalf("received %d messages, want %d", len(received), len(msgs))
	}
	for i := range msgs {
		sameMessage(t, i, received[i], msgs[i])
	}
}

func TestRedisStreamsPublisherWritesWhatWatermillsPublisherWrites(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	ours, err := relay.NewRedisStreamsPublisher(client, relay.RedisStreamsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// watermill's publisher closes its client on Close.
	theirs, err := redisstream.NewPublisher(redisstream.PublisherConfig{
		Client: redis.NewClient(&redis.Options{Addr: srv.Addr})}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = theirs.Close() })
	msgs := testMessages(t, 30)
	publishInBatches(t, ours, "el-ours", msgs, 30)
	publishInBatches(t, theirs, "el-theirs", msgs, 30)

	ctx := context.Background()
	a, err := client.XRange(ctx, "el-ours", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	b, err := client.XRange(ctx, "el-theirs", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(msgs) || len(b) != len(msgs) {
		t.Fatalf("entries: ours %d, watermill's %d; want %d each", len(a), len(b), len(msgs))
	}
	for i := range msgs {
		if !slices.Equal(sortedKeys(a[i].Values), sortedKeys(b[i].Values)) {
			t.Fatalf("entry %d fields: ours %v, watermill's %v", i, sortedKeys(a[i].Values), sortedKeys(b[i].Values))
		}
		for k, v := range b[i].Values {
			// msgpack encodes a map in Go's map order, so a metadata field
			// with several keys differs byte-wise between any two encodings,
			// watermill's own included; it is compared decoded below.
			if k == "metadata" && len(msgs[i].Metadata) > 1 {
				continue
			}
			if a[i].Values[k] != v {
				t.Fatalf("entry %d field %q: ours %q, watermill's %q", i, k, a[i].Values[k], v)
			}
		}
		var um redisstream.DefaultMarshallerUnmarshaller
		got, err := um.Unmarshal(a[i].Values)
		if err != nil {
			t.Fatal(err)
		}
		want, err := um.Unmarshal(b[i].Values)
		if err != nil {
			t.Fatal(err)
		}
		sameMessage(t, i, got, want)
	}
}

func TestRedisStreamsPublisherTrimsLikeWatermill(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	ctx := context.Background()
	// Approximate trimming drops whole stream nodes only, so a stream keeps
	// at least its bound and less than a node more.
	node, err := client.ConfigGet(ctx, "stream-node-max-entries").Result()
	if err != nil {
		t.Fatal(err)
	}
	var nodeMax int64
	if _, err := fmt.Sscan(node["stream-node-max-entries"], &nodeMax); err != nil || nodeMax < 1 {
		t.Fatalf("stream-node-max-entries = %v (%v)", node, err)
	}
	bounded, err := relay.NewRedisStreamsPublisher(client, relay.RedisStreamsConfig{
		Maxlens: map[string]int64{"el-capped": 10, "el-negative": -1}, DefaultMaxlen: 50})
	if err != nil {
		t.Fatal(err)
	}
	unbounded, err := relay.NewRedisStreamsPublisher(client, relay.RedisStreamsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = message.NewMessage(fmt.Sprint(i), []byte("x"))
	}
	for _, c := range []struct {
		pub   *relay.RedisStreamsPublisher
		topic string
		bound int64
	}{
		{bounded, "el-capped", 10},
		{bounded, "el-negative", 50}, // negative means DefaultMaxlen
		{bounded, "el-other", 50},
		{unbounded, "el-free", n},
	} {
		publishInBatches(t, c.pub, c.topic, msgs, 100)
		got, err := client.XLen(ctx, c.topic).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got < c.bound || (c.bound < n && got >= c.bound+nodeMax) {
			t.Fatalf("%s holds %d entries; want %d (at most %d more when trimmed)", c.topic, got, c.bound, nodeMax-1)
		}
		last, err := client.XRevRangeN(ctx, c.topic, "+", "-", 1).Result()
		if err != nil || len(last) != 1 || last[0].Values[redisstream.UUIDHeaderKey] != msgs[n-1].UUID {
			t.Fatalf("%s: newest entry %v (%v); want message %s", c.topic, last, err, msgs[n-1].UUID)
		}
	}
}

func TestRedisStreamsPublisherRefusesBadInputWithoutWriting(t *testing.T) {
	if _, err := relay.NewRedisStreamsPublisher(nil, relay.RedisStreamsConfig{}); !errors.Is(err, relay.ErrInvalidConfig) {
		t.Fatalf("nil client: err = %v, want ErrInvalidConfig", err)
	}
	srv := redistest.Start(t)
	client := srv.Client(t)
	pub, err := relay.NewRedisStreamsPublisher(client, relay.RedisStreamsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish("el-bad"); err != nil {
		t.Fatalf("empty publish: %v", err)
	}
	good := message.NewMessage("good", []byte("x"))
	reserved := message.NewMessage("reserved", []byte("x"))
	reserved.Metadata.Set(redisstream.UUIDHeaderKey, "spoofed")
	for name, msgs := range map[string][]*message.Message{
		"nil message":       {good, nil},
		"reserved metadata": {good, reserved},
	} {
		err := pub.Publish("el-bad", msgs...)
		if err == nil {
			t.Fatalf("%s: Publish succeeded", name)
		}
		t.Logf("%s: %v", name, err)
	}
	if n := client.Exists(context.Background(), "el-bad").Val(); n != 0 {
		t.Fatal("a refused Publish wrote to the stream")
	}

	// A command Redis rejects fails the call and names the message.
	if err := client.Set(context.Background(), "el-string", "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	err = pub.Publish("el-string", good)
	var rerr redis.Error
	if !errors.As(err, &rerr) || !strings.Contains(err.Error(), "WRONGTYPE") || !strings.Contains(err.Error(), "good") {
		t.Fatalf("publish to a string key: err = %v, want a WRONGTYPE redis error naming message good", err)
	}
}

func TestRedisStreamsPublisherClose(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	pub, err := relay.NewRedisStreamsPublisher(client, relay.RedisStreamsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pub.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := pub.Publish("el-closed", message.NewMessage("m", nil)); !errors.Is(err, relay.ErrPublisherClosed) {
		t.Fatalf("Publish after Close: err = %v, want ErrPublisherClosed", err)
	}
	// The client is the caller's: still open.
	if err := client.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("client after Close: %v", err)
	}
	if n := client.Exists(context.Background(), "el-closed").Val(); n != 0 {
		t.Fatal("Publish after Close wrote to the stream")
	}
}

func TestRedisStreamsPublisherFailsWhenRedisIsDown(t *testing.T) {
	srv := redistest.Start(t)
	if srv.Kind == redistest.KindEnv {
		t.Skipf("needs a private redis-server to kill, got %s", srv.Kind)
	}
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: time.Second,
		ReadTimeout: time.Second, WriteTimeout: time.Second})
	t.Cleanup(func() { _ = client.Close() })
	pub, err := relay.NewRedisStreamsPublisher(client, relay.RedisStreamsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	msgs := testMessages(t, 10)
	if err := pub.Publish("el-down", msgs[:5]...); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	done := make(chan error, 1)
	go func() { done <- pub.Publish("el-down", msgs[5:]...) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Publish succeeded with Redis down")
		}
		if !strings.Contains(err.Error(), msgs[5].UUID) {
			t.Fatalf("error does not name the first message: %v", err)
		}
		t.Logf("with Redis down: %v", err)
	case <-time.After(30 * time.Second): // a hang, far beyond the client's timeouts
		t.Fatal("Publish did not return with Redis down")
	}
}

// TestRelayThroughRedisStreamsPublisherSurvivesRedisRestart kills Redis under a
// running relay: publishing fails and is retried, and once Redis is back every
// event is in the stream, in order of first appearance.
func TestRelayThroughRedisStreamsPublisherSurvivesRedisRestart(t *testing.T) {
	srv := redistest.StartWith(t, redistest.Options{Persistent: true})
	if srv.Kind == redistest.KindEnv {
		t.Skipf("needs a private redis-server to kill, got %s", srv.Kind)
	}
	client := srv.Client(t)
	pub, err := relay.NewRedisStreamsPublisher(client, relay.RedisStreamsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	store := newStore(t)
	appendEvents(t, store, 100, 3, "a")
	r, err := relay.New(relay.Config{Store: store, Publisher: pub, Topic: "el-restart", BatchSize: 16,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Checkpoint: relay.NewRedisCheckpoint(client, "el:relay:restart-streams:checkpoint")})
	if err != nil {
		t.Fatal(err)
	}
	stop := runRelay(t, r)
	waitFor(t, "first events relayed", func() bool { return r.Status().Published >= 100 })
	srv.Kill()
	appendEvents(t, store, 100, 3, "b")
	waitFor(t, "a publish failure", func() bool { return r.Status().PublishFailures+r.Status().CheckpointFailures > 0 })
	srv.Restart()
	want := allRecords(t, store)
	head := want[len(want)-1].Position
	waitFor(t, "relay at head", func() bool { return r.Status().Position == head })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	entries, err := client.XRange(context.Background(), "el-restart", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var firsts []string
	seen := map[string]bool{}
	for _, e := range entries {
		id, _ := e.Values[redisstream.UUIDHeaderKey].(string)
		if !seen[id] {
			seen[id] = true
			firsts = append(firsts, id)
		}
	}
	if len(firsts) != len(want) {
		t.Fatalf("stream holds %d distinct events (%d entries), want %d", len(firsts), len(entries), len(want))
	}
	for i, rec := range want {
		if firsts[i] != rec.ID.String() {
			t.Fatalf("event %d in the stream is %s, want %s", i, firsts[i], rec.ID)
		}
	}
	t.Logf("%d events, %d stream entries (%d duplicates from retried batches)", len(want), len(entries), len(entries)-len(want))
}

func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

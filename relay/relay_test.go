package relay_test

import (
	"context"
	"errors"
	"iter"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/relay/consume"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

const topic = "orders"

func fastRetry(cfg relay.Config) relay.Config {
	cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 5*time.Millisecond
	return cfg
}

func TestForwardsEveryEventOnceInOrder(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	store := newStore(t)
	appendEvents(t, store, 700, 7, "a")
	ps := orderedChannel(t)
	got := collect(t, ps, topic)
	reg := prometheus.NewRegistry()
	cp := relay.NewRedisCheckpoint(client, "el:relay:test:checkpoint")
	r, err := relay.New(relay.Config{Store: store, Publisher: ps, Checkpoint: cp, Topic: topic, BatchSize: 64, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	stop := runRelay(t, r)
	// Events committed while the relay runs arrive too.
	appendEvents(t, store, 300, 3, "b")
	want := allRecords(t, store)
	waitFor(t, "all 1000 events", func() bool { return got.len() >= len(want) })
	waitFor(t, "checkpoint at head", func() bool { return r.Status().Position == want[len(want)-1].Position })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	recs := got.records(t)
	if len(recs) != len(want) {
		t.Fatalf("got %d messages, want %d", len(recs), len(want))
	}
	for i := range want {
		sameRecord(t, recs[i], want[i])
	}
	pos, err := cp.Load(context.Background())
	if err != nil || pos != want[len(want)-1].Position {
		t.Fatalf("checkpoint in redis = %v, %v; want %v", pos, err, want[len(want)-1].Position)
	}
	st := r.Status()
	if st.Published != 1000 || st.Skipped != 0 || st.PublishFailures != 0 || st.Running {
		t.Fatalf("status %+v", st)
	}
	if v := metricValue(t, reg, "eventline_relay_published_events_total"); v != 1000 {
		t.Fatalf("published metric %v", v)
	}
	// Watermill's correlation key is set for its CorrelationID middleware.
	got.mu.Lock()
	m := got.msgs[0]
	got.mu.Unlock()
	if middleware.MessageCorrelationID(m) != want[0].Metadata.CorrelationID || m.UUID != want[0].ID.String() {
		t.Fatalf("message %s correlation %q", m.UUID, middleware.MessageCorrelationID(m))
	}
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// crashingCheckpoint fails the failAt-th Save and "crashes" the relay at that
// moment by cancelling its context, as a process dying between publishing a
// batch and saving the checkpoint would.
type crashingCheckpoint struct {
	relay.Checkpoint
	failAt int
	crash  context.CancelFunc

	mu        sync.Mutex
	saves     int
	lastSaved eventstore.Position
	failedAt  eventstore.Position
}

func (c *crashingCheckpoint) Save(ctx context.Context, pos eventstore.Position) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.saves++
	if c.saves == c.failAt {
		c.failedAt = pos
		c.crash()
		return errors.New("checkpoint store unreachable")
	}
	c.lastSaved = pos
	return c.Checkpoint.Save(ctx, pos)
}

func TestRestartResumesFromCheckpointRepublishingOnlyTheUnsavedBatch(t *testing.T) {
	srv := redistest.Start(t)
	cp := relay.NewRedisCheckpoint(srv.Client(t), "el:relay:restart:checkpoint")
	store := newStore(t)
	appendEvents(t, store, 500, 5, "a")
	want := allRecords(t, store)
	ps := orderedChannel(t)
	got := collect(t, ps, topic)

	ctx, crash := context.WithCancel(context.Background())
	defer crash()
	failing := &crashingCheckpoint{Checkpoint: cp, failAt: 3, crash: crash}
	first, err := relay.New(fastRetry(relay.Config{Store: store, Publisher: ps, Checkpoint: failing, Topic: topic, BatchSize: 40}))
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Run(ctx); err != nil {
		t.Fatalf("first Run: %v", err)
	}
	saved, err := cp.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if saved != failing.lastSaved || !saved.Before(failing.failedAt) {
		t.Fatalf("checkpoint %v after the crash; last save %v, failed save %v", saved, failing.lastSaved, failing.failedAt)
	}

	second, err := relay.New(fastRetry(relay.Config{Store: store, Publisher: ps, Checkpoint: cp, Topic: topic, BatchSize: 40}))
	if err != nil {
		t.Fatal(err)
	}
	stop := runRelay(t, second)
	waitFor(t, "second relay at head", func() bool { return second.Status().Position == want[len(want)-1].Position })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	counts := map[eventstore.Position]int{}
	recs := got.records(t)
	for i, rec := range recs {
		counts[rec.Position]++
		if i > 0 && !recs[i-1].Position.Before(rec.Position) && counts[rec.Position] == 1 {
			t.Fatalf("message %d at %v after %v: order broken outside the replayed batch", i, rec.Position, recs[i-1].Position)
		}
	}
	dups := 0
	for _, rec := range want {
		unsaved := saved.Before(rec.Position) && !failing.failedAt.Before(rec.Position)
		wantCount := 1
		if unsaved {
			wantCount = 2
			dups++
		}
		if counts[rec.Position] != wantCount {
			t.Fatalf("event at %v delivered %d times, want %d (saved %v, failed save %v)",
				rec.Position, counts[rec.Position], wantCount, saved, failing.failedAt)
		}
	}
	if dups == 0 || len(recs) != len(want)+dups {
		t.Fatalf("%d messages for %d events with %d duplicates", len(recs), len(want), dups)
	}
}

// flakyPublisher fails its first n Publish calls, publishing nothing, and
// records whether the checkpoint was ever ahead of what it was asked to publish.
type flakyPublisher struct {
	message.Publisher
	cp    relay.Checkpoint
	fails atomic.Int32

	mu        sync.Mutex
	calls     int
	violation string
}

func (p *flakyPublisher) Publish(topic string, msgs ...*message.Message) error {
	first, err := consume.RecordFrom(msgs[0])
	if err != nil {
		return err
	}
	pos, err := p.cp.Load(context.Background())
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.calls++
	if !pos.Before(first.Position) && p.violation == "" {
		p.violation = "checkpoint " + pos.String() + " at or past unpublished " + first.Position.String()
	}
	p.mu.Unlock()
	if p.fails.Add(-1) >= 0 {
		return errors.New("broker down")
	}
	return p.Publisher.Publish(topic, msgs...)
}

func TestPublishFailuresAreRetriedWithoutLossOrEarlyCheckpoint(t *testing.T) {
	store := newStore(t)
	appendEvents(t, store, 300, 3, "a")
	want := allRecords(t, store)
	ps := orderedChannel(t)
	got := collect(t, ps, topic)
	cp := &relay.MemoryCheckpoint{}
	pub := &flakyPublisher{Publisher: ps, cp: cp}
	const failures = 7
	pub.fails.Store(failures)
	r, err := relay.New(fastRetry(relay.Config{Store: store, Publisher: pub, Checkpoint: cp, Topic: topic, BatchSize: 50}))
	if err != nil {
		t.Fatal(err)
	}
	stop := runRelay(t, r)
	waitFor(t, "relay at head", func() bool { return r.Status().Position == want[len(want)-1].Position })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	recs := got.records(t)
	if len(recs) != len(want) {
		t.Fatalf("got %d messages, want %d", len(recs), len(want))
	}
	for i := range want {
		sameRecord(t, recs[i], want[i])
	}
	if pub.violation != "" {
		t.Fatal(pub.violation)
	}
	if st := r.Status(); st.PublishFailures != failures || st.LastError != "" {
		t.Fatalf("status %+v, want %d publish failures and no error left", st, failures)
	}
}

func TestFilterAndTopicByType(t *testing.T) {
	store := newStore(t)
	appendEvents(t, store, 90, 3, "a")
	want := allRecords(t, store)
	ps := orderedChannel(t)
	confirmed := collect(t, ps, "ev.order.confirmed")
	placed := collect(t, ps, "ev.order.placed")
	r, err := relay.New(relay.Config{Store: store, Publisher: ps, Checkpoint: &relay.MemoryCheckpoint{},
		TopicFor: relay.TopicByType("ev."), Filter: relay.Types("order.confirmed")})
	if err != nil {
		t.Fatal(err)
	}
	stop := runRelay(t, r)
	waitFor(t, "relay at head", func() bool { return r.Status().Position == want[len(want)-1].Position })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var wantConfirmed []eventstore.Record
	for _, rec := range want {
		if rec.Type == "order.confirmed" {
			wantConfirmed = append(wantConfirmed, rec)
		}
	}
	recs := confirmed.records(t)
	if len(recs) != len(wantConfirmed) || placed.len() != 0 {
		t.Fatalf("got %d confirmed, %d placed; want %d, 0", len(recs), placed.len(), len(wantConfirmed))
	}
	for i := range recs {
		sameRecord(t, recs[i], wantConfirmed[i])
	}
	if st := r.Status(); st.Skipped != uint64(len(want)-len(wantConfirmed)) || st.Published != uint64(len(wantConfirmed)) {
		t.Fatalf("status %+v", st)
	}
}

func TestRedisStreamsEndToEnd(t *testing.T) {
	t.Run("watermill publisher", func(t *testing.T) {
		srv := redistest.Start(t)
		// The redisstream publisher closes its client on Close.
		pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{
			Client: redis.NewClient(&redis.Options{Addr: srv.Addr})}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pub.Close() })
		relayThroughRedisStreams(t, srv, pub)
	})
	t.Run("pipelined publisher", func(t *testing.T) {
		srv := redistest.Start(t)
		pub, err := relay.NewRedisStreamsPublisher(srv.Client(t), relay.RedisStreamsConfig{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pub.Close() })
		relayThroughRedisStreams(t, srv, pub)
	})
}

// relayThroughRedisStreams relays events through pub to watermill's Redis
// Streams subscriber in a consumer group, and checks that each arrives once,
// intact and in order.
func relayThroughRedisStreams(t *testing.T, srv *redistest.Server, pub message.Publisher) {
	store := newStore(t)
	appendEvents(t, store, 400, 4, "a")
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		// The subscriber closes its client on Close.
		Client: redis.NewClient(&redis.Options{Addr: srv.Addr}), ConsumerGroup: "saga", OldestId: "0",
		DisableIndefiniteInitialBlock: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	got := collect(t, sub, "el-orders")
	r, err := relay.New(relay.Config{Store: store, Publisher: pub, Topic: "el-orders",
		Checkpoint: relay.NewRedisCheckpoint(srv.Client(t), "el:relay:streams:checkpoint")})
	if err != nil {
		t.Fatal(err)
	}
	stop := runRelay(t, r)
	appendEvents(t, store, 100, 2, "b")
	want := allRecords(t, store)
	waitFor(t, "all events through redis streams", func() bool { return got.len() >= len(want) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	recs := got.records(t)
	if len(recs) != len(want) {
		t.Fatalf("got %d messages, want %d", len(recs), len(want))
	}
	for i := range want {
		sameRecord(t, recs[i], want[i])
	}
	if n := srv.Client(t).XLen(context.Background(), "el-orders").Val(); n != int64(len(want)) {
		t.Fatalf("stream holds %d entries, want %d", n, len(want))
	}
}

func TestLeaseLetsOneRelayPublishAndHandsOver(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	store := newStore(t)
	appendEvents(t, store, 200, 4, "a")
	ps := orderedChannel(t)
	got := collect(t, ps, topic)
	cp := relay.NewRedisCheckpoint(client, "el:relay:lease:checkpoint")
	newRelay := func(name string) *relay.Relay {
		lease, err := relay.NewRedisLease(relay.RedisLeaseConfig{Redis: client, Key: "el:relay:lease", TTL: 300 * time.Millisecond, Owner: name})
		if err != nil {
			t.Fatal(err)
		}
		r, err := relay.New(fastRetry(relay.Config{Name: name, Store: store, Publisher: ps, Checkpoint: cp, Topic: topic,
			Lease: lease}))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a, b := newRelay("a"), newRelay("b")
	stopA := runRelay(t, a)
	waitFor(t, "a leads", func() bool { return a.Status().Leader })
	stopB := runRelay(t, b)
	waitFor(t, "first 200 events", func() bool { return got.len() >= 200 })
	waitFor(t, "b running", func() bool { return b.Status().Running })
	if st := b.Status(); st.Leader || st.Published != 0 {
		t.Fatalf("b published without the lease: %+v", st)
	}
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	appendEvents(t, store, 200, 4, "b")
	want := allRecords(t, store)
	waitFor(t, "b takes over to the head", func() bool { return b.Status().Position == want[len(want)-1].Position })
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	seen := map[eventstore.Position]bool{}
	for _, rec := range got.records(t) {
		seen[rec.Position] = true
	}
	for _, rec := range want {
		if !seen[rec.Position] {
			t.Fatalf("event at %v lost in the hand-over", rec.Position)
		}
	}
	if b.Status().Published == 0 {
		t.Fatal("b never published")
	}
}

func TestRunTwiceAndClosedStore(t *testing.T) {
	store := newStore(t)
	ps := orderedChannel(t)
	r, err := relay.New(relay.Config{Store: store, Publisher: ps, Checkpoint: &relay.MemoryCheckpoint{}})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- r.Run(context.Background()) }()
	waitFor(t, "running", func() bool { return r.Status().Running })
	if err := r.Run(context.Background()); !errors.Is(err, relay.ErrRunning) {
		t.Fatalf("second Run: %v, want ErrRunning", err)
	}
	_ = store.Close()
	if err := <-errc; !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("Run after store closed: %v, want ErrClosed", err)
	}
}

func TestConfigValidate(t *testing.T) {
	err := relay.Config{BatchSize: -1}.Validate()
	if !errors.Is(err, relay.ErrInvalidConfig) {
		t.Fatalf("Validate: %v", err)
	}
	for _, field := range []string{"Store", "Publisher", "Checkpoint", "BatchSize"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
	if _, err := relay.New(relay.Config{}); !errors.Is(err, relay.ErrInvalidConfig) {
		t.Fatalf("New: %v", err)
	}
}

// failingSubscribeStore fails its first fails subscriptions, each after
// delivering nothing, then subscribes normally.
type failingSubscribeStore struct {
	eventstore.Store
	fails atomic.Int32
}

func (s *failingSubscribeStore) Subscribe(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	if s.fails.Add(-1) >= 0 {
		return func(yield func(eventstore.Record, error) bool) {
			yield(eventstore.Record{}, errors.New("store connection reset"))
		}
	}
	return s.Store.Subscribe(ctx, after)
}

func TestSubscriptionFailuresRecover(t *testing.T) {
	mem := newStore(t)
	appendEvents(t, mem, 20, 2, "a")
	want := allRecords(t, mem)
	store := &failingSubscribeStore{Store: mem}
	store.fails.Store(3)
	ps := orderedChannel(t)
	got := collect(t, ps, topic)
	reg := prometheus.NewRegistry()
	r, err := relay.New(fastRetry(relay.Config{Store: store, Publisher: ps, Checkpoint: &relay.MemoryCheckpoint{},
		Topic: topic, Registerer: reg}))
	if err != nil {
		t.Fatal(err)
	}
	stop := runRelay(t, r)
	waitFor(t, "relay at head", func() bool { return r.Status().Position == want[len(want)-1].Position })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := got.len(); n != len(want) {
		t.Fatalf("got %d messages, want %d", n, len(want))
	}
	// The failing state ends once a subscription delivers again.
	if st := r.Status(); st.LastError != "" {
		t.Fatalf("status %+v, want no error left after the subscription recovered", st)
	}
	if v := metricValue(t, reg, "eventline_relay_failing"); v != 0 {
		t.Fatalf("failing gauge %v after recovery, want 0", v)
	}
}

func TestRedisLeaseConfigValidate(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	for name, cfg := range map[string]relay.RedisLeaseConfig{
		"no redis":  {Key: "k"},
		"no key":    {Redis: client},
		"short ttl": {Redis: client, Key: "k", TTL: time.Millisecond},
		"negative":  {Redis: client, Key: "k", TTL: -time.Second},
	} {
		if _, err := relay.NewRedisLease(cfg); !errors.Is(err, relay.ErrInvalidConfig) {
			t.Errorf("%s: NewRedisLease = %v, want ErrInvalidConfig", name, err)
		}
	}
	if _, err := relay.NewRedisLease(relay.RedisLeaseConfig{Redis: client, Key: "k"}); err != nil {
		t.Fatalf("default TTL: %v", err)
	}
}

// TestLeaderStepsDownWhenRedisIsGone stops the lease's Redis under a leading
// relay: it must stop leading once it can no longer prove it holds the
// lease, and lead again when Redis is back.
func TestLeaderStepsDownWhenRedisIsGone(t *testing.T) {
	srv := redistest.Start(t)
	if srv.Kind == redistest.KindEnv {
		t.Skip("cannot stop a server named by EVENTLINE_TEST_REDIS_URL")
	}
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { _ = client.Close() })
	store := newStore(t)
	lease, err := relay.NewRedisLease(relay.RedisLeaseConfig{Redis: client, Key: "el:relay:lease", TTL: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(fastRetry(relay.Config{Store: store, Publisher: orderedChannel(t), Checkpoint: &relay.MemoryCheckpoint{},
		Topic: topic, Lease: lease}))
	if err != nil {
		t.Fatal(err)
	}
	stop := runRelay(t, r)
	waitFor(t, "leading", func() bool { return r.Status().Leader })
	srv.Kill()
	waitFor(t, "stepping down without Redis", func() bool { return !r.Status().Leader })
	srv.Restart()
	waitFor(t, "leading again", func() bool { return r.Status().Leader })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

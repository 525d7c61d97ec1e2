package projection

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/eventstore/sqlite"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/query"
	"github.com/eventline/eventline/redisurl"
	"github.com/redis/go-redis/v9"
)

// pcounts is a partitioned test projection that is not idempotent: applying
// a record twice shows as a wrong count. "inc" increments n:<stream> inc and
// the partition's total; "add" adds V to n:<stream> sum. Keys are written in
// the record's partition (Tx.Key).
func pcounts(name string, n int) Projection {
	return Partitioned(Define(name, 1, func(ctx context.Context, tx *Tx, rec eventstore.Record) error {
		switch rec.Type {
		case "inc":
			tx.HIncrBy(ctx, tx.Key("n", rec.StreamID), "inc", 1)
			tx.Pipe().Incr(ctx, tx.Key("total"))
		case "add":
			tx.HIncrBy(ctx, tx.Key("n", rec.StreamID), "sum", int64(rec.Version%7))
		}
		return nil
	}, "inc", "add"), n, nil)
}

// pexpected is the model pcounts builds from the log of store, folded in Go:
// key (key#field for hashes) → value, keys routed with query.PartitionOf.
func pexpected(t testing.TB, store eventstore.Store, name string, n int) map[string]string {
	t.Helper()
	return pexpectedOf(t, store, name, query.Version(1), n)
}

// pexpectedOf is pexpected with the keys of build b.
func pexpectedOf(t testing.TB, store eventstore.Store, name string, b query.Build, n int) map[string]string {
	t.Helper()
	m := map[string]int64{}
	for rec, err := range store.ReadAll(context.Background(), eventstore.Start) {
		if err != nil {
			t.Fatal(err)
		}
		part := query.Partition{Index: query.PartitionOf(rec.StreamID, n), Count: n}
		switch rec.Type {
		case "inc":
			m[query.PartitionKey(name, b, part, "n", rec.StreamID)+"#inc"]++
			m[query.PartitionKey(name, b, part, "total")]++
		case "add":
			m[query.PartitionKey(name, b, part, "n", rec.StreamID)+"#sum"] += int64(rec.Version % 7)
		}
	}
	out := map[string]string{}
	for k, v := range m {
		out[k] = strconv.FormatInt(v, 10)
	}
	return out
}

// pdump reads every model key of every partition of version 1 of name,
// each partition on its node (on a cluster, the master of its hash tag).
func pdump(t testing.TB, rc redis.UniversalClient, name string, n int) map[string]string {
	t.Helper()
	return pdumpOf(t, rc, name, query.Version(1), n)
}

// pdumpOf is pdump of build b.
func pdumpOf(t testing.TB, rc redis.UniversalClient, name string, b query.Build, n int) map[string]string {
	t.Helper()
	ctx := context.Background()
	m := map[string]string{}
	for p := range n {
		prefix := query.PartitionPrefix(name, b, query.Partition{Index: p, Count: n})
		rdb, err := nodeOf(ctx, rc, prefix)
		if err != nil {
			t.Fatal(err)
		}
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			k := iter.Val()
			switch k[len(prefix):] {
			case "checkpoint", "lease", "status", "deadletter", "retry":
				continue
			}
			switch rdb.Type(ctx, k).Val() {
			case "string":
				m[k] = rdb.Get(ctx, k).Val()
			case "hash":
				for f, v := range rdb.HGetAll(ctx, k).Val() {
					m[k+"#"+f] = v
				}
			default:
				t.Fatalf("unexpected key %s", k)
			}
		}
		if err := iter.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// appendStreams appends events from..to-1, spread over 40 streams.
func appendStreams(t testing.TB, s eventstore.Store, from, to int) eventstore.Position {
	t.Helper()
	var pos eventstore.Position
	for i := from; i < to; i++ {
		res, err := s.Append(context.Background(), "cart-"+strconv.Itoa(i%40), eventstore.Any, event(i))
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		pos = res.Position
	}
	return pos
}

// holders returns the lease holder of each partition of version 1.
func holders(rdb redis.UniversalClient, name string, n int) []string {
	hs := make([]string, n)
	for p := range hs {
		hs[p] = holderOf(rdb, partLeaseKey(name, query.Version(1), query.Partition{Index: p, Count: n}))
	}
	return hs
}

// spread reports whether the partitions are held by exactly the runners
// ids, each holding ceil(n/len) or floor(n/len).
func spread(hs []string, ids ...string) bool {
	count := map[string]int{}
	for _, h := range hs {
		if !slices.Contains(ids, h) {
			return false
		}
		count[h]++
	}
	lo, hi := len(hs)/len(ids), (len(hs)+len(ids)-1)/len(ids)
	for _, id := range ids {
		if count[id] < lo || count[id] > hi {
			return false
		}
	}
	return true
}

func TestPartitionedLayoutAndRouting(t *testing.T) {
	// The partition function is part of the format: these must never change.
	for key, want := range map[string]int{"": 5, "a": 4, "cart-1": 5, "cart-2": 4} {
		if got := query.PartitionOf(key, 8); got != want {
			t.Errorf("PartitionOf(%q, 8) = %d, want %d", key, got, want)
		}
	}
	if query.PartitionOf("cart-1", 1) != 0 {
		t.Error("one partition must be partition 0")
	}
	b := query.Version(3)
	if got := query.PartitionKey("carts", b, query.Partition{}, "cart", "1"); got != query.Key("carts", b, "cart", "1") {
		t.Errorf("unpartitioned key %q differs from Key", got)
	}
	if got := query.PartitionKey("carts", query.Build{Version: 3, Generation: 1}, query.Partition{Index: 2, Count: 4}, "cart", "1"); got != "{el:carts:p2}:v3g1:cart:1" {
		t.Errorf("partition key %q", got)
	}
	if err := Validate(Partitioned(counts("x"), 0, nil)); err == nil {
		t.Error("0 partitions accepted")
	}
}

func TestPartitionedRunner(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	store := memory.New()
	const n = 4
	appendStreams(t, store, 0, 200)
	r := newRunner(t, Config{Store: store, Redis: rdb, Projection: pcounts("pc", n), BatchSize: 50, Logger: quietLogger()})
	startRunner(t, r)
	head := appendStreams(t, store, 200, 400)
	v := waitFor(t, rdb, "pc", head)
	waitUntil(t, 10*time.Second, "the runner's own checkpoint", func() bool { return r.Checkpoint() == head })
	if v.Partitions != n {
		t.Fatalf("View.Partitions = %d, want %d", v.Partitions, n)
	}
	want := pexpected(t, store, "pc", n)
	if d := diffModels(want, pdump(t, rdb, "pc", n)); d != "" {
		t.Fatalf("model differs from the fold of the log:\n%s", d)
	}
	// Every partition's checkpoint follows the whole log.
	cps, err := v.Checkpoints(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for p, cp := range cps {
		if cp != head {
			t.Errorf("partition %d at %s, want %s", p, cp, head)
		}
	}
	// A reader routes a key to its partition.
	ctx := context.Background()
	got, err := rdb.HGet(ctx, v.KeyFor("cart-5", "n", "cart-5"), "inc").Result()
	if err != nil || got != want[v.KeyFor("cart-5", "n", "cart-5")+"#inc"] {
		t.Fatalf("KeyFor read %q, %v", got, err)
	}
	// Status: a row per partition with its holder and checkpoint, and a total.
	waitUntil(t, 10*time.Second, "every partition's status", func() bool {
		st, err := ReadStatus(ctx, rdb, "pc", query.Build{})
		if err != nil || len(st.Parts) != n || st.Checkpoint != head || st.Holder != r.ID() {
			return false
		}
		for _, p := range st.Parts {
			if p.Holder != r.ID() || p.Checkpoint != head || p.State != StateRunning {
				return false
			}
		}
		return true
	})
}

// TestPartitionedVersionBump builds version 2 of a partitioned projection
// beside version 1 (partitioned with another count, or not partitioned: a
// model moving to partitions), switches once every partition has caught up,
// and removes version 1's keys.
func TestPartitionedVersionBump(t *testing.T) {
	for _, c := range []struct{ n1, n2 int }{{4, 3}, {1, 3}, {4, 1}} {
		t.Run(strconv.Itoa(c.n1)+" to "+strconv.Itoa(c.n2)+" partitions", func(t *testing.T) { versionBump(t, c.n1, c.n2) })
	}
}

func versionBump(t *testing.T, n1, n2 int) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	store := memory.New()
	ctx := context.Background()
	appendStreams(t, store, 0, 300)
	v1 := newRunner(t, Config{Store: store, Redis: rdb, Projection: pcounts("vb", n1), BatchSize: 50, Logger: quietLogger(),
		RetireDelay: time.Millisecond})
	x1 := startRunner(t, v1)
	head := appendStreams(t, store, 300, 400)
	waitFor(t, rdb, "vb", head)
	p2 := Partitioned(Define("vb", 2, func(ctx context.Context, tx *Tx, rec eventstore.Record) error {
		tx.HIncrBy(ctx, tx.Key("n", rec.StreamID), "all", 1)
		return nil
	}), n2, nil)
	x2 := startRunner(t, newRunner(t, Config{Store: store, Redis: rdb, Projection: p2, BatchSize: 50, Logger: quietLogger(),
		RetireDelay: time.Millisecond}))
	head = appendStreams(t, store, 400, 450)
	waitUntil(t, 30*time.Second, "the switch to v2", func() bool {
		v, err := query.WaitFor(ctx, rdb, "vb", head)
		return err == nil && v.Version == 2 && v.Partitions == n2
	})
	v, _ := query.Resolve(ctx, rdb, "vb")
	if got := rdb.HGet(ctx, v.KeyFor("cart-3", "n", "cart-3"), "all").Val(); got != strconv.Itoa(450/40+1) {
		t.Fatalf("v2 count of cart-3 = %q", got)
	}
	select {
	case <-x1.done:
		if !errors.Is(x1.err, ErrSuperseded) {
			t.Fatalf("v1's runner returned %v, want ErrSuperseded", x1.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("v1's runner still runs 30 s after the switch")
	}
	waitUntil(t, 30*time.Second, "removal of v1's partitions", func() bool {
		for p := range n1 {
			prefix := query.PartitionPrefix("vb", query.Version(1), query.Partition{Index: p, Count: n1})
			if len(rdb.Keys(ctx, prefix+"*").Val()) > 0 {
				return false
			}
		}
		return rdb.HExists(ctx, query.PartitionsKey("vb"), "1").Val() == false
	})
	_ = x2.stop()
}

func TestPartitionedWaitForKeyWaitsForItsPartitionOnly(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	const n = 4
	b := query.Version(1)
	if err := recordPartitions(ctx, rdb, "w", b, n); err != nil {
		t.Fatal(err)
	}
	rdb.Set(ctx, query.ActiveKey("w"), "1", 0)
	at := func(p int, c uint64) {
		rdb.HSet(ctx, query.PartitionCheckpointKey("w", b, query.Partition{Index: p, Count: n}),
			query.FieldPosition, eventstore.Position{Commit: c, Prepare: c}.String())
	}
	for p := range n {
		at(p, 5)
	}
	key := "cart-1"
	mine := query.PartitionOf(key, n)
	at(mine, 10)
	w := query.NewWatcher(rdb, query.WatcherConfig{})
	t.Cleanup(func() { _ = w.Close() })
	pos := eventstore.Position{Commit: 9, Prepare: 9}
	for _, wait := range []func(context.Context) (*query.View, error){
		func(ctx context.Context) (*query.View, error) { return query.WaitForKey(ctx, rdb, "w", key, pos) },
		func(ctx context.Context) (*query.View, error) { return w.WaitForKey(ctx, "w", key, pos) },
	} {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if _, err := wait(wctx); err != nil {
			t.Fatalf("wait for the key's partition: %v", err)
		}
		cancel()
	}
	// The whole projection is at 5: WaitFor waits, and a commit of the last
	// partitions behind, announced on the commit channel, wakes it.
	done := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := w.WaitFor(wctx, "w", pos)
		done <- err
	}()
	waitUntil(t, 10*time.Second, "the waiter to register", func() bool { return w.Waiting() == 1 })
	for p := range n {
		at(p, 10)
	}
	rdb.Publish(ctx, query.CommitChannel("w"), query.CommitMessage(b, eventstore.Position{Commit: 10, Prepare: 10}.String()))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestPartitionsRebalance starts one runner, adds two, stops one cleanly and
// crashes another (its leases and membership left to expire) while events
// flow: the partitions spread evenly after each change and the model ends
// equal to the fold of the log, which a partition applied twice or skipped
// would break. It runs on one node and on a cluster, where the partitions'
// keys must spread over more than one master.
func TestPartitionsRebalance(t *testing.T) { onTargets(t, partitionsRebalance) }

func partitionsRebalance(t *testing.T, tg redisTarget) {
	rdb := tg.RDB
	store := memory.New()
	const n = 8
	ttl := 300 * time.Millisecond
	mk := func(id string) *Runner {
		return newRunner(t, Config{Store: store, Redis: rdb, Projection: pcounts("rb", n), ID: id, BatchSize: 20,
			LeaseTTL: ttl, Logger: quietLogger()})
	}
	var appended atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := store.Append(context.Background(), "cart-"+strconv.Itoa(i%40), eventstore.Any, event(i)); err != nil {
				t.Error(err)
				return
			}
			appended.Add(1)
			if i%10 == 9 {
				time.Sleep(time.Millisecond) // pacing, not synchronisation
			}
		}
	}()
	within := 30 * time.Second // generous on a shared machine; a deadline, not a timing claim
	settle := func(what string, ids ...string) {
		t.Helper()
		start := time.Now()
		waitUntil(t, within, what, func() bool { return spread(holders(rdb, "rb", n), ids...) })
		t.Logf("%s: %v after %v (lease TTL %v)", what, holders(rdb, "rb", n), time.Since(start).Round(time.Millisecond), ttl)
	}
	a := startRunner(t, mk("a"))
	settle("one runner takes every partition", "a")
	b := startRunner(t, mk("b"))
	c := mk("c")
	// c will crash: it never releases its leases nor leaves the members.
	c.noRelease = true
	cr := startRunner(t, c)
	settle("three runners share the partitions", "a", "b", "c")
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	settle("two runners share b's partitions", "a", "c")
	cr.cancel()
	<-cr.done
	settle("a takes over c's orphaned partitions", "a")
	close(stop)
	wg.Wait()
	head, err := store.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, rdb, "rb", head)
	if d := diffModels(pexpected(t, store, "rb", n), pdump(t, rdb, "rb", n)); d != "" {
		t.Fatalf("model differs from the fold of the log:\n%s", d)
	}
	if tg.Cluster != nil {
		ms := partitionKeyMasters(t, rdb, "rb")
		t.Logf("partition keys per master: %v", ms)
		if len(ms) < 2 {
			t.Fatalf("the keys of %d partitions are on %d master(s), want at least 2: %v", n, len(ms), ms)
		}
	}
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events", appended.Load())
}

// Environment of the partitioned child: the crash test's child runs
// pcounts with envPartChild partitions and the ID in envPartChildID.
const (
	envPartChild   = "EVENTLINE_PROJECTION_PART_CHILD"
	envPartChildID = "EVENTLINE_PROJECTION_PART_ID"
	// envPartChildURL is the Redis URL (one node or a cluster) the child
	// opens with redisurl.Open.
	envPartChildURL = "EVENTLINE_PROJECTION_PART_REDIS_URL"
)

// partChild runs pcounts over the SQLite log until killed, on the Redis
// server or cluster named by envPartChildURL.
func partChild() int {
	ctx := context.Background()
	store, err := sqlite.Open(ctx, sqlite.Config{Path: os.Getenv(envChildDB), PollInterval: 2 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	n, _ := strconv.Atoi(os.Getenv(envPartChild))
	rdb, err := redisurl.Open(os.Getenv(envPartChildURL))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	r, err := NewRunner(Config{Store: store, Redis: rdb, Projection: pcounts("kp", n), ID: os.Getenv(envPartChildID),
		BatchSize: 50, LeaseTTL: 500 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Logger: quietLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	if err := r.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

// TestPartitionedReplicasSIGKILL runs three runner processes of a
// partitioned projection and SIGKILLs one at random, then restarts it, six
// times while events are appended: the final model equals the fold of the
// log key for key. It runs on one node and on a cluster.
func TestPartitionedReplicasSIGKILL(t *testing.T) { onTargets(t, partitionedReplicasSIGKILL) }

func partitionedReplicasSIGKILL(t *testing.T, tg redisTarget) {
	if tg.Server != nil && tg.Server.Kind != redistest.KindProcess {
		t.Fatalf("the crash test needs a private redis-server, got %s", tg.Server.Kind)
	}
	rdb := tg.RDB
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "events.db")
	store, err := sqlite.Open(ctx, sqlite.Config{Path: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	const n = 6
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := store.Append(ctx, "cart-"+strconv.Itoa(i%40), eventstore.Any, event(i)); err != nil {
				t.Error(err)
				return
			}
			if i%20 == 19 {
				time.Sleep(time.Millisecond) // pacing, not synchronisation
			}
		}
	}()
	start := func(id string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envPartChild+"="+strconv.Itoa(n), envPartChildID+"="+id,
			envChildDB+"="+db, envPartChildURL+"="+tg.URL)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	kill := func(cmd *exec.Cmd) {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
	ids := []string{"k0", "k1", "k2"}
	procs := map[string]*exec.Cmd{}
	for _, id := range ids {
		procs[id] = start(id)
	}
	t.Cleanup(func() {
		for _, p := range procs {
			kill(p)
		}
	})
	progress := func() {
		v := query.ViewOf(rdb, "kp", query.Version(1), n)
		from, _ := v.Checkpoint(ctx)
		waitUntil(t, 60*time.Second, "every partition to commit", func() bool {
			cp, err := v.Checkpoint(ctx)
			return err == nil && from.Before(cp)
		})
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	for range 6 {
		progress()
		time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond) // a random moment, not synchronisation
		id := ids[rng.IntN(len(ids))]
		kill(procs[id])
		procs[id] = start(id)
	}
	close(stop)
	wg.Wait()
	head, err := store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, rdb, "kp", head)
	if d := diffModels(pexpected(t, store, "kp", n), pdump(t, rdb, "kp", n)); d != "" {
		t.Fatalf("model after SIGKILLs differs from the fold of the log:\n%s", d)
	}
}

// TestPartitionCountIsFixedPerBuild: a build begun unpartitioned cannot be
// taken over by a runner with partitions, nor a partitioned build by an
// unpartitioned runner; readers would look for its keys in the wrong tags.
func TestPartitionCountIsFixedPerBuild(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	b := query.Version(1)

	// Begun unpartitioned: its checkpoint is in the projection's own tag.
	rdb.HSet(ctx, query.CheckpointKey("one", b), query.FieldPosition, eventstore.SeqPosition(3).String())
	if err := recordPartitions(ctx, rdb, "one", b, 1); err != nil {
		t.Fatalf("unpartitioned runner on an unpartitioned build: %v", err)
	}
	if err := recordPartitions(ctx, rdb, "one", b, 4); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("4 partitions over a build begun unpartitioned: got %v, want ErrInvalidConfig", err)
	}
	if rdb.HExists(ctx, query.PartitionsKey("one"), b.String()).Val() {
		t.Fatal("the refused runner recorded its partition count")
	}

	// Recorded with 4 partitions.
	if err := recordPartitions(ctx, rdb, "four", b, 4); err != nil {
		t.Fatalf("first runner of a partitioned build: %v", err)
	}
	if err := recordPartitions(ctx, rdb, "four", b, 4); err != nil {
		t.Fatalf("second runner with the same count: %v", err)
	}
	for _, n := range []int{1, 3} {
		if err := recordPartitions(ctx, rdb, "four", b, n); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("%d partitions over a build recorded with 4: got %v, want ErrInvalidConfig", n, err)
		}
	}
}

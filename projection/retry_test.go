package projection

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/query"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
)

// fixable is a projection whose "poison" records fail until fixed is set;
// once fixed, each applied one increments the key "fixed", so a record
// applied twice shows as 2, and the field n of the hash "fixedh" through the
// write helpers, whose merged writes must reach the retry's transaction too.
func fixable(fixed *atomic.Bool) Projection {
	return Define("c", 1, func(ctx context.Context, tx *Tx, rec eventstore.Record) error {
		switch rec.Type {
		case "inc":
			tx.Pipe().Incr(ctx, tx.Key("total"))
		case "poison":
			if !fixed.Load() {
				return errors.New("cannot apply poison")
			}
			tx.Pipe().Incr(ctx, tx.Key("fixed"))
			tx.HIncrBy(ctx, tx.Key("fixedh"), "n", 1)
		}
		return nil
	}, "inc", "poison")
}

// deadLettered starts a runner of fixable over 5 incs, a poison record and
// 5 incs, and waits until the poison record is dead-lettered.
func deadLettered(t *testing.T, rdb *redis.Client, store eventstore.Store, fixed *atomic.Bool, id string) (*Runner, *running, eventstore.Position) {
	t.Helper()
	ctx := context.Background()
	for range 5 {
		if _, err := store.Append(ctx, "ok", eventstore.Any, eventstore.Event{Type: "inc"}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := store.Append(ctx, "bad", eventstore.Any, eventstore.Event{Type: "poison"})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := store.Append(ctx, "ok", eventstore.Any, eventstore.Event{Type: "inc"}); err != nil {
			t.Fatal(err)
		}
	}
	r := newRunner(t, Config{Store: store, Redis: rdb, Projection: fixable(fixed), OnPoison: DeadLetter,
		StatusEvery: 10 * time.Millisecond, ID: id, Logger: quietLogger()})
	x := startRunner(t, r)
	head, _ := store.Head(ctx)
	waitFor(t, rdb, "c", head)
	if n := rdb.LLen(ctx, DeadLetterKey("c", query.Version(1))).Val(); n != 1 {
		t.Fatalf("dead letters = %d, want 1", n)
	}
	return r, x, res.Position
}

func TestRetryDeadLetterAppliesOnce(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	store := memory.New()
	ctx := context.Background()
	var fixed atomic.Bool
	r, _, pos := deadLettered(t, rdb, store, &fixed, "")

	fixed.Store(true)
	if err := RetryDeadLetter(ctx, rdb, RetryDeadLetterOptions{Projection: "c", Build: query.Build{}, Position: pos}); err != nil {
		t.Fatal(err)
	}
	retryKey := RetryKey("c", query.Build{Version: 1})
	waitUntil(t, 10*time.Second, "the retry applied", func() bool {
		return rdb.LLen(ctx, retryKey).Val() == 0 && rdb.LLen(ctx, DeadLetterKey("c", query.Version(1))).Val() == 0
	})
	// More records and several more passes of the runner leave it applied once.
	res, err := store.Append(ctx, "ok", eventstore.Any, eventstore.Event{Type: "inc"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, rdb, "c", res.Position)
	before := testutil.ToFloat64(r.m.batches)
	since := time.Now()
	for range 2 { // the second pass has run the retries after the first
		waitUntil(t, 10*time.Second, "another status pass", func() bool {
			s, err := ReadStatus(ctx, rdb, "c", query.Version(1))
			return err == nil && s.UpdatedAt.After(since)
		})
		since = time.Now()
	}
	if got := rdb.Get(ctx, query.Key("c", query.Version(1), "fixed")).Val(); got != "1" {
		t.Fatalf("fixed = %q, want 1", got)
	}
	if got := rdb.HGet(ctx, query.Key("c", query.Version(1), "fixedh"), "n").Val(); got != "1" {
		t.Fatalf("fixedh n = %q, want 1 (the write helpers' writes of a retry)", got)
	}
	if got := rdb.Get(ctx, query.Key("c", query.Version(1), "total")).Val(); got != "11" {
		t.Fatalf("total = %q, want 11", got)
	}
	if testutil.ToFloat64(r.m.batches) != before {
		t.Fatal("a retry counted as a batch")
	}
	if cp := checkpointOf(rdb, "c"); cp != res.Position {
		t.Fatalf("checkpoint = %s, want %s", cp, res.Position)
	}
	if err := RetryDeadLetter(ctx, rdb, RetryDeadLetterOptions{Projection: "c", Build: query.Build{}, Position: pos}); !errors.Is(err, ErrNoDeadLetter) {
		t.Fatalf("second retry: %v, want ErrNoDeadLetter", err)
	}
}

func TestRetryDeadLetterFailsAgain(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	store := memory.New()
	ctx := context.Background()
	var fixed atomic.Bool
	r, _, pos := deadLettered(t, rdb, store, &fixed, "")
	asked := time.Now()

	if err := RetryDeadLetter(ctx, rdb, RetryDeadLetterOptions{Projection: "c", Build: query.Build{Version: 1}, Position: pos}); err != nil {
		t.Fatal(err)
	}
	if n := rdb.LLen(ctx, DeadLetterKey("c", query.Version(1))).Val(); n != 0 {
		t.Fatalf("dead letters right after the request = %d, want 0 (moved to the retry list)", n)
	}
	retries, err := ReadRetries(ctx, rdb, "c", query.Build{Version: 1})
	if err != nil || len(retries) > 1 {
		t.Fatalf("retries = %v, %v", retries, err)
	}
	retryKey := RetryKey("c", query.Build{Version: 1})
	waitUntil(t, 10*time.Second, "the retry back in the dead letters", func() bool {
		return rdb.LLen(ctx, retryKey).Val() == 0 && rdb.LLen(ctx, DeadLetterKey("c", query.Version(1))).Val() == 1
	})
	var e DeadLetterEntry
	if err := json.Unmarshal([]byte(rdb.LIndex(ctx, DeadLetterKey("c", query.Version(1)), 0).Val()), &e); err != nil {
		t.Fatal(err)
	}
	if e.Position != pos.String() || e.StreamID != "bad" || !strings.Contains(e.Error, "cannot apply poison") || e.At.Before(asked) {
		t.Fatalf("dead letter = %+v, want the poison record failed again after %v", e, asked)
	}
	if got := rdb.Exists(ctx, query.Key("c", query.Version(1), "fixed")).Val(); got != 0 {
		t.Fatal("the failed retry wrote to the model")
	}
	if testutil.ToFloat64(r.m.deadLetters) != 2 {
		t.Fatalf("dead letter metric = %v, want 2", testutil.ToFloat64(r.m.deadLetters))
	}
	if err := RetryDeadLetter(ctx, rdb, RetryDeadLetterOptions{Projection: "c", Build: query.Build{}, Position: eventstore.Position{Commit: 999, Prepare: 999}}); !errors.Is(err, ErrNoDeadLetter) {
		t.Fatalf("retry of an unknown position: %v, want ErrNoDeadLetter", err)
	}
}

func TestRetryDeadLetterFenced(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	store := memory.New()
	ctx := context.Background()
	var fixed atomic.Bool
	_, x, pos := deadLettered(t, rdb, store, &fixed, "first")
	if err := x.stop(); err != nil {
		t.Fatal(err)
	}
	fixed.Store(true)
	if err := RetryDeadLetter(ctx, rdb, RetryDeadLetterOptions{Projection: "c", Build: query.Build{}, Position: pos}); err != nil {
		t.Fatal(err)
	}
	// Another runner holds the lease: this one must not apply the request.
	lease := leaseKey("c", query.Build{Version: 1})
	stealLease(t, rdb, lease, "someone-else")
	r := newRunner(t, Config{Store: store, Redis: rdb, Projection: fixable(&fixed), OnPoison: DeadLetter,
		ID: "second", Logger: quietLogger()})
	if err := r.retryDeadLetters(ctx); !errors.Is(err, ErrFenced) {
		t.Fatalf("retry by a non-holder: %v, want ErrFenced", err)
	}
	retryKey := RetryKey("c", query.Build{Version: 1})
	if n := rdb.LLen(ctx, retryKey).Val(); n != 1 {
		t.Fatalf("retry requests = %d, want 1 left for the holder", n)
	}
	if rdb.Exists(ctx, query.Key("c", query.Version(1), "fixed")).Val() != 0 {
		t.Fatal("a non-holder applied the retry")
	}
	// Once the lease is free, a runner takes it and applies the request.
	rdb.Del(ctx, lease)
	r2 := newRunner(t, Config{Store: store, Redis: rdb, Projection: fixable(&fixed), OnPoison: DeadLetter,
		StatusEvery: 10 * time.Millisecond, ID: "third", Logger: quietLogger()})
	startRunner(t, r2)
	waitUntil(t, 10*time.Second, "the retry applied by the new holder", func() bool {
		return rdb.LLen(ctx, retryKey).Val() == 0
	})
	if got := rdb.Get(ctx, query.Key("c", query.Version(1), "fixed")).Val(); got != "1" {
		t.Fatalf("fixed = %q, want 1", got)
	}
}

// TestRetryDeadLetterPartitioned dead-letters a poison record of a
// projection in 4 partitions, reads its retry request back and retries it:
// the request lands in the list of the partition that applies the record,
// whose runner applies it once.
func TestRetryDeadLetterPartitioned(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	store := memory.New()
	ctx := context.Background()
	const n = 4
	var fixed atomic.Bool
	for i := range 8 {
		if _, err := store.Append(ctx, "ok-"+strconv.Itoa(i), eventstore.Any, eventstore.Event{Type: "inc"}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := store.Append(ctx, "bad", eventstore.Any, eventstore.Event{Type: "poison"})
	if err != nil {
		t.Fatal(err)
	}
	pos := res.Position
	// A second poison record, in another partition, stays dead-lettered.
	other := "bad-0"
	for i := 1; query.PartitionOf(other, n) == query.PartitionOf("bad", n); i++ {
		other = "bad-" + strconv.Itoa(i)
	}
	res2, err := store.Append(ctx, other, eventstore.Any, eventstore.Event{Type: "poison"})
	if err != nil {
		t.Fatal(err)
	}
	r := newRunner(t, Config{Store: store, Redis: rdb, Projection: Partitioned(fixable(&fixed), n, nil), OnPoison: DeadLetter,
		StatusEvery: 10 * time.Millisecond, Logger: quietLogger()})
	startRunner(t, r)
	b := query.Version(1)
	part := query.Partition{Index: query.PartitionOf("bad", n), Count: n}
	deadKey := partDeadLetterKey("c", b, part)
	waitUntil(t, 10*time.Second, "the poison records dead-lettered", func() bool {
		dead, err := ReadDeadLetters(ctx, rdb, "c", b, 0)
		return err == nil && len(dead) == 2
	})
	dead, err := ReadDeadLetters(ctx, rdb, "c", b, 0)
	if err != nil || len(dead) != 2 || dead[0].StreamID != "bad" || dead[1].StreamID != other ||
		dead[0].Position != pos.String() || dead[1].Position != res2.Position.String() {
		t.Fatalf("dead letters across partitions: %+v, %v; want bad at %s, then %s at %s", dead, err, pos, other, res2.Position)
	}
	if latest, err := ReadDeadLetters(ctx, rdb, "c", b, 1); err != nil || len(latest) != 1 || latest[0].StreamID != other {
		t.Fatalf("the latest dead letter: %+v, %v; want %s's", latest, err, other)
	}

	fixed.Store(true)
	if err := RetryDeadLetter(ctx, rdb, RetryDeadLetterOptions{Projection: "c", Build: b, Position: pos}); err != nil {
		t.Fatalf("retry of a partitioned build's dead letter: %v", err)
	}
	waitUntil(t, 10*time.Second, "the retry applied", func() bool {
		return rdb.LLen(ctx, partRetryKey("c", b, part)).Val() == 0 && rdb.LLen(ctx, deadKey).Val() == 0
	})
	if got := rdb.Get(ctx, query.PartitionKey("c", b, part, "fixed")).Val(); got != "1" {
		t.Fatalf("fixed in the record's partition = %q, want 1", got)
	}
	if retries, err := ReadRetries(ctx, rdb, "c", b); err != nil || len(retries) != 0 {
		t.Fatalf("retries after the retry: %v, %v", retries, err)
	}
	if dead, err := ReadDeadLetters(ctx, rdb, "c", b, 0); err != nil || len(dead) != 1 || dead[0].StreamID != other {
		t.Fatalf("dead letters after the retry: %+v, %v; want %s's alone", dead, err, other)
	}
	if err := RetryDeadLetter(ctx, rdb, RetryDeadLetterOptions{Projection: "c", Build: b, Position: pos}); !errors.Is(err, ErrNoDeadLetter) {
		t.Fatalf("second retry: %v, want ErrNoDeadLetter", err)
	}
}

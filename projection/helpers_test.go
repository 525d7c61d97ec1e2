package projection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/lease"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
)

// counts is the test projection. It is deliberately not idempotent: applying
// a record twice shows as a wrong count.
//   - "inc": HINCRBY counts <stream> 1 and INCR total (Redis-native updates).
//   - "add": read-modify-write of a JSON document sum:<stream> through
//     Tx.Read and Tx.Memo (the overlay of the batch's own writes).
//   - "poison": always fails.
//   - anything else is not handled and must be skipped.
func counts(name string) Projection {
	return Define(name, 1, func(ctx context.Context, tx *Tx, rec eventstore.Record) error {
		switch rec.Type {
		case "inc":
			tx.Pipe().HIncrBy(ctx, tx.Key("counts"), rec.StreamID, 1)
			tx.Pipe().Incr(ctx, tx.Key("total"))
		case "add":
			var e struct{ V int }
			if err := json.Unmarshal(rec.Data, &e); err != nil {
				return err
			}
			key := tx.Key("sum", rec.StreamID)
			var s sumDoc
			if v, ok := tx.Memo(key); ok {
				s = v.(sumDoc)
			} else {
				b, err := tx.Read().Get(ctx, key).Bytes()
				if err != nil && !errors.Is(err, redis.Nil) {
					return err
				}
				if err == nil {
					if err := json.Unmarshal(b, &s); err != nil {
						return err
					}
				}
			}
			s.N++
			s.Sum += e.V
			tx.SetMemo(key, s)
			b, _ := json.Marshal(s)
			tx.Pipe().Set(ctx, key, b, 0)
		case "poison":
			return errors.New("cannot apply poison")
		}
		return nil
	}, "inc", "add", "poison")
}

type sumDoc struct {
	N   int `json:"n"`
	Sum int `json:"sum"`
}

// event makes the i-th test event: mostly "inc" and "add", some "other".
func event(i int) eventstore.Event {
	switch i % 5 {
	case 0, 1:
		return eventstore.Event{Type: "inc"}
	case 2, 3:
		return eventstore.Event{Type: "add", Data: []byte(`{"V":` + strconv.Itoa(i%7) + `}`)}
	default:
		return eventstore.Event{Type: "other"}
	}
}

func streamOf(i int) string { return "s-" + strconv.Itoa(i%13) }

// appendEvents appends events from..to-1 one per call and returns the last
// append's position.
func appendEvents(t testing.TB, s eventstore.Store, from, to int) eventstore.Position {
	t.Helper()
	var pos eventstore.Position
	for i := from; i < to; i++ {
		res, err := s.Append(context.Background(), streamOf(i), eventstore.Any, event(i))
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		pos = res.Position
	}
	return pos
}

// expected computes the model of events 0..n-1 in Go.
func expected(name string, n int) map[string]string {
	m := map[string]string{}
	total := 0
	cnt := map[string]int{}
	sums := map[string]sumDoc{}
	for i := range n {
		switch event(i).Type {
		case "inc":
			cnt[streamOf(i)]++
			total++
		case "add":
			s := sums[streamOf(i)]
			s.N++
			s.Sum += i % 7
			sums[streamOf(i)] = s
		}
	}
	if total > 0 {
		m[query.Key(name, query.Version(1), "total")] = strconv.Itoa(total)
	}
	for st, c := range cnt {
		m[query.Key(name, query.Version(1), "counts")+"#"+st] = strconv.Itoa(c)
	}
	for st, s := range sums {
		b, _ := json.Marshal(s)
		m[query.Key(name, query.Version(1), "sum", st)] = string(b)
	}
	return m
}

// dumpModel reads every read model key of version 1 of name: strings as
// key → value, hashes as key#field → value. Bookkeeping keys are left out.
func dumpModel(t testing.TB, rdb redis.UniversalClient, name string) map[string]string {
	t.Helper()
	m, err := dump(rdb, name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func dump(rc redis.UniversalClient, name string) (map[string]string, error) {
	ctx := context.Background()
	m := map[string]string{}
	prefix := query.Prefix(name, query.Version(1))
	err := eachKey(ctx, rc, prefix, func(rdb redis.Cmdable, k string) error {
		switch strings.TrimPrefix(k, prefix) {
		case "checkpoint", "lease", "status", "deadletter", "retry":
			return nil
		}
		typ, err := rdb.Type(ctx, k).Result()
		if err != nil {
			return err
		}
		switch typ {
		case "string":
			m[k] = rdb.Get(ctx, k).Val()
		case "hash":
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				m[k+"#"+f] = v
			}
		default:
			return fmt.Errorf("unexpected %s key %s", typ, k)
		}
		return nil
	})
	return m, err
}

// eachKey calls fn with every key that starts with prefix, which lies in
// one hash tag, and the client of the node that holds the tag (on Redis
// Cluster, SCAN lists one node's keys).
func eachKey(ctx context.Context, rc redis.UniversalClient, prefix string, fn func(rdb redis.Cmdable, key string) error) error {
	rdb, err := nodeOf(ctx, rc, prefix)
	if err != nil {
		return err
	}
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		if err := fn(rdb, iter.Val()); err != nil {
			return err
		}
	}
	return iter.Err()
}

func diffModels(want, got map[string]string) string {
	var b strings.Builder
	for k, v := range want {
		if got[k] != v {
			fmt.Fprintf(&b, "%s: want %q, got %q\n", k, v, got[k])
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&b, "%s: unexpected %q\n", k, v)
		}
	}
	return b.String()
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func checkpointOf(rdb redis.Cmdable, name string) eventstore.Position {
	p, _ := query.ReadCheckpoint(context.Background(), rdb, name, query.Version(1))
	return p
}

// running is a Runner run in the background until the test ends or stop is
// called.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func startRunner(t testing.TB, r *Runner) *running {
	ctx, cancel := context.WithCancel(context.Background())
	x := &running{cancel: cancel, done: make(chan struct{})}
	go func() { x.err = r.Run(ctx); close(x.done) }()
	t.Cleanup(func() { _ = x.stop() })
	return x
}

// stop cancels Run and returns its result.
func (x *running) stop() error {
	x.cancel()
	<-x.done
	return x.err
}

// waitFor waits for the projection to be active and to reach position.
func waitFor(t testing.TB, rdb redis.Cmdable, name string, position eventstore.Position) *query.View {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitUntil(t, 30*time.Second, "activation of "+name, func() bool {
		_, err := query.Resolve(ctx, rdb, name)
		return err == nil
	})
	v, err := query.WaitFor(ctx, rdb, name, position)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// holderOf returns the owner of the lease at key ("" when nobody holds it).
func holderOf(rdb redis.UniversalClient, key string) string {
	st, _ := lease.Read(context.Background(), rdb, key)
	return st.Owner
}

// stealLease makes owner the holder of the lease at key for a minute, over
// whoever holds it, as a takeover after an unnoticed expiry would: with a
// fencing token above any the key gave out.
func stealLease(t testing.TB, rdb redis.UniversalClient, key, owner string) {
	t.Helper()
	err := rdb.HSet(context.Background(), key, lease.FieldOwner, owner, lease.FieldToken, "1000000",
		lease.FieldExpires, strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10)).Err()
	if err != nil {
		t.Fatal(err)
	}
}

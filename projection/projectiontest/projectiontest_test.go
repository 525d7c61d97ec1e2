package projectiontest_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/projection/projectiontest"
)

// fakeTB records what the helper reports instead of failing the test.
type fakeTB struct {
	testing.TB
	errors []string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func rec(stream, typ, data string) eventstore.Record {
	return eventstore.Record{StreamID: stream, Event: eventstore.Event{Type: typ, Data: []byte(data)}}
}

// last keeps the last value per stream (SET): idempotent and batch-free.
func last() projection.Projection {
	return projection.Define("last", 1, func(ctx context.Context, tx *projection.Tx, r eventstore.Record) error {
		tx.Pipe().Set(ctx, tx.Key("last", r.StreamID), string(r.Data), 0)
		tx.Pipe().SAdd(ctx, tx.Key("streams"), r.StreamID)
		return nil
	}, "v")
}

// counter counts records with INCR: right once, wrong when replayed.
func counter() projection.Projection {
	return projection.Define("counter", 1, func(ctx context.Context, tx *projection.Tx, r eventstore.Record) error {
		tx.Pipe().Incr(ctx, tx.Key("n", r.StreamID))
		return nil
	}, "v")
}

// readBack keeps a running sum by reading the committed value and ignoring
// the batch's own pending writes (no Tx.Memo): right in batches of one,
// wrong in larger ones.
func readBack() projection.Projection {
	return projection.Define("readback", 1, func(ctx context.Context, tx *projection.Tx, r eventstore.Record) error {
		key := tx.Key("sum", r.StreamID)
		cur, err := tx.Read().Get(ctx, key).Int()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		n, _ := strconv.Atoi(string(r.Data))
		if r.Version == 1 {
			cur = 0 // a stream's first record starts the sum: replayable
		}
		tx.Pipe().Set(ctx, key, cur+n, 0)
		return nil
	}, "v")
}

var records = []eventstore.Record{rec("a", "v", "1"), rec("b", "v", "2"), rec("a", "other", "x"), rec("a", "v", "3")}

func TestCheckPassesAGoodProjection(t *testing.T) {
	for name, rdb := range map[string]redis.UniversalClient{
		"redis-server": redistest.Start(t).Client(t),
		"miniredis":    projectiontest.Miniredis(t),
	} {
		t.Run(name, func(t *testing.T) {
			want := projectiontest.Model{"last:a": "3", "last:b": "2", "streams": projectiontest.Set{"b", "a"}}
			if err := projectiontest.Check(context.Background(), rdb, last(), projectiontest.Case{Name: "two streams", Records: records, Want: want}); err != nil {
				t.Fatal(err)
			}
			f := &fakeTB{TB: t}
			projectiontest.Run(f, rdb, last(), projectiontest.Case{Name: "two streams", Records: records, Want: want})
			if len(f.errors) != 0 {
				t.Fatalf("Run reported %q", f.errors)
			}
			// Check leaves nothing behind.
			if n := len(rdb.Keys(context.Background(), "*").Val()); n != 0 {
				t.Fatalf("%d keys left in Redis", n)
			}
		})
	}
}

func TestCheckCatchesANonIdempotentProjection(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	c := projectiontest.Case{Name: "counts", Records: records, Want: projectiontest.Model{"n:a": "2", "n:b": "1"}}
	err := projectiontest.Check(context.Background(), rdb, counter(), c)
	if !errors.Is(err, projectiontest.ErrMismatch) {
		t.Fatalf("Check = %v, want ErrMismatch", err)
	}
	for _, want := range []string{"applied twice", `- n:a: "2"`, `+ n:a: "4"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the difference does not say %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "applied once") {
		t.Errorf("the first pass is right, yet reported:\n%v", err)
	}
	f := &fakeTB{TB: t}
	projectiontest.Run(f, rdb, counter(), c)
	if len(f.errors) != 1 || !strings.Contains(f.errors[0], "applied twice") {
		t.Fatalf("Run reported %q, want one error about the second pass", f.errors)
	}
}

func TestCheckCatchesABatchDependentProjection(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	c := projectiontest.Case{Name: "sums", Records: records, Want: projectiontest.Model{"sum:a": "4", "sum:b": "2"}}
	err := projectiontest.Check(context.Background(), rdb, readBack(), c)
	if !errors.Is(err, projectiontest.ErrMismatch) || !strings.Contains(err.Error(), "all records in one batch, applied once") {
		t.Fatalf("Check = %v, want a mismatch of the single batch", err)
	}
	if strings.Contains(err.Error(), "batches of 1,") {
		t.Errorf("batches of one are right, yet reported:\n%v", err)
	}
}

func TestCheckReportsApplyErrors(t *testing.T) {
	rdb := projectiontest.Miniredis(t)
	failing := projection.Define("failing", 1, func(context.Context, *projection.Tx, eventstore.Record) error {
		return errors.New("boom")
	})
	err := projectiontest.Check(context.Background(), rdb, failing, projectiontest.Case{Name: "x", Records: records})
	if err == nil || errors.Is(err, projectiontest.ErrMismatch) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Check = %v, want the Apply error", err)
	}
	if err := projectiontest.Check(context.Background(), rdb, projection.Define("Bad", 1, nil), projectiontest.Case{}); !errors.Is(err, projection.ErrInvalidConfig) {
		t.Fatalf("Check of an invalid projection = %v", err)
	}
}

func TestDiff(t *testing.T) {
	want := projectiontest.Model{"h": map[string]any{"n": 1, "s": "x"}, "gone": "1", "z": projectiontest.ZSet{"a": 1}}
	got := projectiontest.Model{"h": map[string]string{"n": "1", "s": "y"}, "new": []string{"a"}, "z": projectiontest.ZSet{"a": 1}}
	d := projectiontest.Diff(want, got)
	wantDiff := `- gone: "1"
+ gone: (missing)
- h: hash{n="1" s="x"}
+ h: hash{n="1" s="y"}
- new: (missing)
+ new: list["a"]
`
	if d != wantDiff {
		t.Fatalf("Diff:\n%s\nwant:\n%s", d, wantDiff)
	}
	if d := projectiontest.Diff(got, got); d != "" {
		t.Fatalf("Diff of equal models: %q", d)
	}
}

// TestOnceOnlyAcceptsACounter: a counting projection fails the second pass,
// and passes with OnceOnly, which still checks every batch size.
func TestOnceOnlyAcceptsACounter(t *testing.T) {
	rdb := projectiontest.Miniredis(t)
	p := projection.Define("counter", 1, func(ctx context.Context, tx *projection.Tx, rec eventstore.Record) error {
		tx.HIncrBy(ctx, tx.Key("n"), "count", 1)
		return nil
	})
	c := projectiontest.Case{
		Name:    "three records",
		Records: []eventstore.Record{{StreamID: "s-1"}, {StreamID: "s-1"}, {StreamID: "s-2"}},
		Want:    projectiontest.Model{"n": map[string]any{"count": 3}},
	}
	if err := projectiontest.Check(context.Background(), rdb, p, c); !errors.Is(err, projectiontest.ErrMismatch) || !strings.Contains(err.Error(), "applied twice") {
		t.Fatalf("a counter applied twice: %v, want a mismatch on the second pass", err)
	}
	c.OnceOnly = true
	if err := projectiontest.Check(context.Background(), rdb, p, c); err != nil {
		t.Fatal(err)
	}
}

package query_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/query"
)

// TestCoalescerAnswersEachQueryItsOwnReads: many concurrent read
// transactions through one Coalescer each get their own commands' results
// and only their own errors (a missing key is redis.Nil for its query alone),
// as with the client's TxPipelined.
func TestCoalescerAnswersEachQueryItsOwnReads(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	const n = 200
	for i := range n {
		if err := rdb.HSet(ctx, "h:"+strconv.Itoa(i), "v", i).Err(); err != nil {
			t.Fatal(err)
		}
	}
	co := query.NewCoalescer(rdb)
	defer co.Close()
	c := co.Client()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			var all *redis.MapStringStringCmd
			var one *redis.StringCmd
			key := "h:" + strconv.Itoa(i)
			missing := i%7 == 0
			field := "v"
			if missing {
				field = "absent"
			}
			cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
				all = p.HGetAll(ctx, key)
				one = p.HGet(ctx, key, field)
				return nil
			})
			switch {
			case len(cmds) != 2:
				errs <- errors.New(key + ": " + strconv.Itoa(len(cmds)) + " commands returned, want 2")
			case missing && !errors.Is(err, redis.Nil):
				errs <- errors.New(key + ": missing field gave " + errOrNil(err) + ", want redis.Nil")
			case !missing && err != nil:
				errs <- errors.New(key + ": " + err.Error())
			case all.Val()["v"] != strconv.Itoa(i):
				errs <- errors.New(key + ": HGETALL gave " + all.Val()["v"])
			case !missing && one.Val() != strconv.Itoa(i):
				errs <- errors.New(key + ": HGET gave " + one.Val())
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func errOrNil(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// TestCoalescerClosed: a closed Coalescer refuses reads with
// ErrCoalescerClosed.
func TestCoalescerClosed(t *testing.T) {
	srv := redistest.Start(t)
	co := query.NewCoalescer(srv.Client(t))
	if err := co.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := co.Client().TxPipelined(context.Background(), func(p redis.Pipeliner) error {
		p.Get(context.Background(), "k")
		return nil
	})
	if !errors.Is(err, query.ErrCoalescerClosed) {
		t.Fatalf("read after Close: %v, want ErrCoalescerClosed", err)
	}
}

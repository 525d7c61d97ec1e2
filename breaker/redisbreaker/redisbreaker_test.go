package redisbreaker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/breaker"
	"github.com/eventline/eventline/breaker/redisbreaker"
	"github.com/eventline/eventline/internal/redistest"
)

func TestRedisKilledOpensAndRestartCloses(t *testing.T) {
	srv := redistest.Start(t)
	if srv.Kind == redistest.KindEnv {
		t.Skip("needs a private server to kill")
	}
	b := breaker.Must(breaker.Config{Name: "redis", Failures: 3, OpenFor: 50 * time.Millisecond})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	rdb.AddHook(redisbreaker.Hook(b))
	ctx := context.Background()

	// Answers are not failures: nil replies, error replies, aborted transactions.
	for i := 0; i < 10; i++ {
		if err := rdb.Get(ctx, "missing").Err(); !errors.Is(err, redis.Nil) {
			t.Fatalf("GET missing: %v", err)
		}
		if err := rdb.Do(ctx, "NOSUCHCOMMAND").Err(); err == nil {
			t.Fatal("an unknown command succeeded")
		}
	}
	if s := b.State(); s != breaker.StateClosed {
		t.Fatalf("state %v after answers, want closed", s)
	}
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	srv.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for b.State() != breaker.StateOpen {
		if time.Now().After(deadline) {
			t.Fatalf("breaker still %v with Redis killed", b.State())
		}
		_ = rdb.Get(ctx, "k").Err()
	}
	err := rdb.Get(ctx, "k").Err()
	var oe *breaker.OpenError
	if !errors.As(err, &oe) || oe.Name != "redis" {
		t.Fatalf("GET with the breaker open: %v, want an *OpenError naming redis", err)
	}
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error { p.Ping(ctx); return nil }); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("pipeline with the breaker open: %v", err)
	}

	srv.Restart()
	deadline = time.Now().Add(30 * time.Second)
	for {
		if err := rdb.Ping(ctx).Err(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("breaker %v, Redis restarted but calls still fail: %v", b.State(), rdb.Ping(ctx).Err())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := b.State(); s != breaker.StateClosed {
		t.Fatalf("state %v after a good probe, want closed", s)
	}
}

func TestIsAnswer(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, true},
		{redis.Nil, true},
		{redis.TxFailedErr, true},
		{errors.New("dial tcp: connection refused"), false},
		{context.DeadlineExceeded, false},
		{&breaker.OpenError{Name: "redis"}, false},
	} {
		if got := redisbreaker.IsAnswer(c.err); got != c.want {
			t.Errorf("IsAnswer(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

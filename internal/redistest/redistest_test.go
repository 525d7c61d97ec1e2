package redistest

import (
	"context"
	"testing"
)

func TestStartKillRestartKeepsPersistentData(t *testing.T) {
	s := StartWith(t, Options{Persistent: true})
	t.Logf("kind: %s", s.Kind)
	c := s.Client(t)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if s.Kind == KindEnv {
		return
	}
	s.Kill()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered after Kill")
	}
	s.Restart()
	got, err := c.Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("after restart: GET k = %q, %v; want v", got, err)
	}
}

package consume_test

import (
	"errors"
	"testing"
	"time"

	"github.com/eventline/eventline/relay/consume"
	"github.com/redis/go-redis/v9"
)

func TestConfigsWrapErrInvalidConfig(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	ps := orderedChannel(t)
	for name, err := range map[string]error{
		"redis dedup without redis": consume.RedisDedupConfig{}.Validate(),
		"redis dedup negative ttl":  consume.RedisDedupConfig{Redis: rdb, DoneTTL: -time.Second}.Validate(),
		"memory dedup negative ttl": consume.MemoryDedupConfig{ClaimTTL: -time.Second}.Validate(),
		"router without poison":     consume.RouterConfig{}.Validate(),
		"router max below min":      consume.RouterConfig{PoisonPublisher: ps, MinBackoff: time.Second, MaxBackoff: time.Millisecond}.Validate(),
		"router negative":           consume.RouterConfig{PoisonPublisher: ps, CloseTimeout: -1}.Validate(),
	} {
		if !errors.Is(err, consume.ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
	if _, err := consume.NewRedisDedup(consume.RedisDedupConfig{}); !errors.Is(err, consume.ErrInvalidConfig) {
		t.Errorf("NewRedisDedup: %v, want ErrInvalidConfig", err)
	}
	if _, err := consume.NewRouter(consume.RouterConfig{}); !errors.Is(err, consume.ErrInvalidConfig) {
		t.Errorf("NewRouter: %v, want ErrInvalidConfig", err)
	}
	for name, err := range map[string]error{
		"redis dedup":  consume.RedisDedupConfig{Redis: rdb}.Validate(),
		"memory dedup": consume.MemoryDedupConfig{}.Validate(),
		"router":       consume.RouterConfig{PoisonPublisher: ps}.Validate(),
	} {
		if err != nil {
			t.Errorf("%s with defaults: %v", name, err)
		}
	}
}

package app

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"

	"github.com/eventline/eventline/breaker"
)

// The names of the circuit breakers: the dependencies they guard, as the
// metrics, /readyz and the 503 bodies name them.
const (
	breakerStore  = "store"
	breakerRedis  = "redis"
	breakerBroker = "broker"
)

// breakers are the circuit breakers of one process, one per dependency.
type breakers struct {
	cfg  Config
	log  *slog.Logger
	reg  prometheus.Registerer
	byID map[string]*breaker.Breaker
}

func newBreakers(cfg Config, log *slog.Logger, reg prometheus.Registerer) *breakers {
	return &breakers{cfg: cfg, log: log, reg: reg, byID: map[string]*breaker.Breaker{}}
}

// get returns the breaker of dependency name, made on first use.
func (bs *breakers) get(name string) (*breaker.Breaker, error) {
	if b, ok := bs.byID[name]; ok {
		return b, nil
	}
	b, err := breaker.New(breaker.Config{
		Name: name, Failures: bs.cfg.BreakerFailures, OpenFor: bs.cfg.BreakerOpenFor,
		Logger: bs.log, Registerer: bs.reg,
	})
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	bs.byID[name] = b
	return b, nil
}

// check is the /readyz check of the breakers: it fails while one is open.
func (bs *breakers) check(context.Context) error {
	var open []string
	for _, name := range bs.names() {
		if err := bs.byID[name].Check(); err != nil {
			open = append(open, err.Error())
		}
	}
	if len(open) > 0 {
		return fmt.Errorf("%s", strings.Join(open, "; "))
	}
	return nil
}

// states maps each breaker to its state, for /readyz.
func (bs *breakers) states() map[string]string {
	out := make(map[string]string, len(bs.byID))
	for name, b := range bs.byID {
		out[name] = b.State().String()
	}
	return out
}

func (bs *breakers) names() []string {
	names := make([]string, 0, len(bs.byID))
	for n := range bs.byID {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// redisLogger sends what go-redis prints to the process's slog stream. Its
// lines carry no level; they are warnings (a failed dial, a bad connection
// dropped from the pool).
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// logRedisTo makes go-redis print through log at level. go-redis has one
// logger per process, so the last call wins; every role of a process logs to
// the same stream anyway.
func logRedisTo(log *slog.Logger, level slog.Level) {
	redis.SetLogger(redisLogger{log.With("component", "go-redis")})
	switch {
	case level <= slog.LevelDebug:
		logging.SetLogLevel(logging.LogLevelDebug)
	case level <= slog.LevelInfo:
		logging.SetLogLevel(logging.LogLevelInfo)
	case level <= slog.LevelWarn:
		logging.SetLogLevel(logging.LogLevelWarn)
	default:
		logging.SetLogLevel(logging.LogLevelError)
	}
}

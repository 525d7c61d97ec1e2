package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/projection"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
)

// Config tells the commands how to reach the application's store and Redis
// and which projections it has.
type Config struct {
	// Projections are the application's projections, at the versions of the
	// code in this binary. Required.
	Projections []projection.Projection
	// OpenStore opens the event store. The command closes what it returns.
	// Required.
	OpenStore func(ctx context.Context) (eventstore.Store, error)
	// OpenRedis returns a client of the Redis holding the read models. The
	// command closes it. Required.
	OpenRedis func(ctx context.Context) (redis.UniversalClient, error)
	// Runner is the template of the rebuild's runner (BatchSize, LeaseTTL,
	// OnPoison, ...). Store, Redis and Projection are set by replay; Logger
	// defaults to Config.Logger.
	Runner projection.Config
	// Logger gets the runner's log lines. nil discards them: the commands
	// write their own output to the cobra command's Out and Err.
	Logger *slog.Logger
	// ConnectTimeout bounds the first contact with the store and Redis.
	// Default 5 s.
	ConnectTimeout time.Duration
}

// ErrInvalidConfig means a Config cannot be used as given.
var ErrInvalidConfig = errors.New("cli: invalid config")

// Validate reports a Config the commands cannot use, as an error matching
// ErrInvalidConfig.
func (c Config) Validate() error {
	switch {
	case c.OpenStore == nil:
		return fmt.Errorf("%w: Config.OpenStore is nil", ErrInvalidConfig)
	case c.OpenRedis == nil:
		return fmt.Errorf("%w: Config.OpenRedis is nil", ErrInvalidConfig)
	case len(c.Projections) == 0:
		return fmt.Errorf("%w: Config.Projections is empty", ErrInvalidConfig)
	}
	seen := map[string]bool{}
	for _, p := range c.Projections {
		if err := projection.Validate(p); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		if seen[p.Name()] {
			return fmt.Errorf("%w: projection %q is listed twice", ErrInvalidConfig, p.Name())
		}
		seen[p.Name()] = true
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	return c
}

// Commands returns the replay and status commands, to add to the
// application's root command.
func Commands(cfg Config) []*cobra.Command {
	return []*cobra.Command{ReplayCommand(cfg), StatusCommand(cfg)}
}

// find returns the projections named, in the order given, or an error naming
// the unknown ones.
func (c Config) find(names []string) ([]projection.Projection, error) {
	var out []projection.Projection
	var unknown []string
	for _, n := range names {
		i := slices.IndexFunc(c.Projections, func(p projection.Projection) bool { return p.Name() == n })
		if i < 0 {
			unknown = append(unknown, n)
			continue
		}
		if !slices.Contains(out, c.Projections[i]) {
			out = append(out, c.Projections[i])
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("unknown projection %q (known: %s)", unknown, c.names())
	}
	return out, nil
}

func (c Config) names() []string {
	var ns []string
	for _, p := range c.Projections {
		ns = append(ns, p.Name())
	}
	return ns
}

// openRedis opens Redis and checks that it answers.
func (c Config) openRedis(ctx context.Context) (redis.UniversalClient, error) {
	ctx, cancel := context.WithTimeout(ctx, c.ConnectTimeout)
	defer cancel()
	rdb, err := c.OpenRedis(ctx)
	if err != nil {
		return nil, fmt.Errorf("redis unreachable: %w", err)
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis unreachable: %w", err)
	}
	return rdb, nil
}

// openStore opens the store and reads its head, which proves it answers.
func (c Config) openStore(ctx context.Context) (eventstore.Store, eventstore.Position, error) {
	ctx, cancel := context.WithTimeout(ctx, c.ConnectTimeout)
	defer cancel()
	s, err := c.OpenStore(ctx)
	if err != nil {
		return nil, eventstore.Position{}, fmt.Errorf("event store unreachable: %w", err)
	}
	head, err := s.Head(ctx)
	if err != nil {
		_ = s.Close()
		return nil, eventstore.Position{}, fmt.Errorf("event store unreachable: %w", err)
	}
	return s, head, nil
}

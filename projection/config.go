package projection

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
)

// Policy says what a runner does with a record the projection keeps failing
// to apply.
type Policy int

const (
	// Stop applies the records before it, then stops the runner with an error
	// matching ErrStuck; Status shows the record's position and the error.
	Stop Policy = iota
	// DeadLetter records it in the version's dead-letter list (DeadLetterKey),
	// atomically with the checkpoint, and goes on.
	DeadLetter
)

// Activation says when a runner makes its version the active one.
type Activation int

const (
	// ActivateIfNewer (the default) makes the runner's version active once it
	// has caught up, if no version is active or the active one is older: a
	// runner deployed with a bumped Version rebuilds blue/green by itself.
	// The switch waits until the new version has passed both the head of the
	// log seen when the runner took the lease and the checkpoint of the
	// version it replaces, so queries never see a half-built model nor go
	// back in time; the old version's runners then stop with ErrSuperseded
	// and its keys are removed in the background.
	ActivateIfNewer Activation = iota
	// ActivateIfNone makes the runner's version active once it has caught up,
	// only if no version is active. A runner whose version is newer than the
	// active one refuses to start (ErrNewVersion): the operator rebuilds
	// explicitly, with the replay command or Rebuild.
	ActivateIfNone
	// ActivateNever leaves the active version alone; whoever builds the
	// version switches with Activate when it decides to.
	ActivateNever
)

// Defaults for Config fields left zero.
const (
	DefaultBatchSize     = 1000
	DefaultFlushInterval = 2 * time.Millisecond
	DefaultLeaseTTL      = 5 * time.Second
	DefaultMaxAttempts   = 3
	DefaultMinBackoff    = 50 * time.Millisecond
	DefaultMaxBackoff    = 2 * time.Second
	DefaultStatusEvery   = time.Second
	DefaultRetireDelay   = 2 * time.Second
)

// Config configures a Runner. Store, Redis and Projection are required; every
// other field has a usable zero value.
type Config struct {
	// Store is the log to read.
	Store eventstore.Store
	// Redis holds the read model, the checkpoint and the lease. Every key of
	// one projection shares a hash tag, so a Redis Cluster client works too.
	Redis redis.UniversalClient
	// Projection is the user code.
	Projection Projection
	// BatchSize bounds the records of one transaction; FlushInterval bounds how
	// long the first record of a batch waits for more. Defaults 1000 and 2 ms.
	BatchSize     int
	FlushInterval time.Duration
	// LeaseTTL is how long a lease lives without renewal; the holder renews it
	// every third of it, and a standby takes over at most about LeaseTTL after
	// the holder died. Default 5 s.
	LeaseTTL time.Duration
	// MaxAttempts is how many times a batch is applied before the record it
	// fails on is handled by OnPoison. Default 3.
	MaxAttempts int
	// OnPoison is the policy for such records. Default Stop.
	OnPoison Policy
	// Activation says when this runner's version becomes active. Default
	// ActivateIfNewer.
	Activation Activation
	// RetireDelay is how long the keys of a version replaced by a switch are
	// kept before their removal starts, so that queries that resolved the old
	// version just before the switch can finish their reads. Default 2 s.
	RetireDelay time.Duration
	// MinBackoff and MaxBackoff bound the pause after Redis or the store
	// failed: doubling from MinBackoff, each pause drawn within ±50% of its
	// step, never above MaxBackoff. MinBackoff is also the pause between the
	// attempts at a record that fails. Defaults 50 ms and 2 s.
	MinBackoff, MaxBackoff time.Duration
	// StatusEvery is how often the lease holder reads the head of the log and
	// writes its status hash. Default 1 s.
	StatusEvery time.Duration
	// ID names this runner in the lease and in Status.Holder; it must be unique
	// among the runners of a projection. Default: host:pid:random.
	ID string
	// Logger gets one line per change of state. nil means slog.Default().
	Logger *slog.Logger
	// Registerer, when set, gets the runner's Prometheus metrics. Runners of
	// one projection in the same process share them.
	Registerer prometheus.Registerer
	// TracerProvider gives the runner a span per batch committed
	// ("projection <name> batch"), linked to the span each record was
	// written under (its eventstore.HeaderTraceparent header; at most
	// MaxBatchLinks distinct ones). A batch serves many commands, so it is a
	// trace of its own that points to each command's trace, not a child of
	// one of them. nil means otel.GetTracerProvider(), the global provider,
	// which does nothing unless the program set one.
	TracerProvider trace.TracerProvider
}

// Validate reports a Config that New would refuse.
func (c Config) Validate() error {
	switch {
	case c.Store == nil:
		return fmt.Errorf("%w: Config.Store is nil", ErrInvalidConfig)
	case c.Redis == nil:
		return fmt.Errorf("%w: Config.Redis is nil", ErrInvalidConfig)
	case c.BatchSize < 0 || c.FlushInterval < 0 || c.LeaseTTL < 0 || c.MaxAttempts < 0 ||
		c.MinBackoff < 0 || c.MaxBackoff < 0 || c.StatusEvery < 0 || c.RetireDelay < 0:
		return fmt.Errorf("%w: negative size or duration", ErrInvalidConfig)
	case c.MinBackoff > 0 && c.MaxBackoff > 0 && c.MinBackoff > c.MaxBackoff:
		return fmt.Errorf("%w: Config.MinBackoff %v is above MaxBackoff %v", ErrInvalidConfig, c.MinBackoff, c.MaxBackoff)
	case c.LeaseTTL != 0 && c.LeaseTTL < 30*time.Millisecond:
		return fmt.Errorf("%w: Config.LeaseTTL %v is below 30ms", ErrInvalidConfig, c.LeaseTTL)
	case c.OnPoison != Stop && c.OnPoison != DeadLetter:
		return fmt.Errorf("%w: unknown Config.OnPoison %d", ErrInvalidConfig, c.OnPoison)
	case c.Activation < ActivateIfNewer || c.Activation > ActivateNever:
		return fmt.Errorf("%w: unknown Config.Activation %d", ErrInvalidConfig, c.Activation)
	}
	return Validate(c.Projection)
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	def(&c.FlushInterval, DefaultFlushInterval)
	def(&c.LeaseTTL, DefaultLeaseTTL)
	def(&c.MinBackoff, DefaultMinBackoff)
	def(&c.MaxBackoff, max(DefaultMaxBackoff, c.MinBackoff))
	def(&c.StatusEvery, DefaultStatusEvery)
	def(&c.RetireDelay, DefaultRetireDelay)
	if c.ID == "" {
		host, _ := os.Hostname()
		var b [6]byte
		_, _ = rand.Read(b[:])
		c.ID = host + ":" + strconv.Itoa(os.Getpid()) + ":" + hex.EncodeToString(b[:])
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

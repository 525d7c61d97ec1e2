package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/eventline/eventline/eventstore"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults Config.withDefaults fills in for zero fields.
const (
	DefaultName       = "default"
	DefaultTopic      = "eventline.events"
	DefaultBatchSize  = 256
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
)

// ErrInvalidConfig means a Config failed Validate.
var ErrInvalidConfig = errors.New("relay: invalid config")

// Config configures a Relay. Store, Publisher and Checkpoint are required; every
// other field has a documented default used when it is zero.
type Config struct {
	// Name identifies the relay in logs and in the "relay" label of its
	// metrics. Default DefaultName.
	Name string
	// Store is the event log to forward from. The relay does not close it.
	Store eventstore.Store
	// Publisher receives the messages. The relay does not close it.
	Publisher message.Publisher
	// Checkpoint keeps the relay's own position. The relay does not close it.
	Checkpoint Checkpoint
	// Lease, when set, makes the relay publish only while it holds the lease,
	// so that of several instances one publishes at a time. Without one, two
	// running instances both publish everything: duplicates, not loss.
	Lease Lease

	// Topic is the topic of every message when TopicFor is nil. Default
	// DefaultTopic.
	Topic string
	// TopicFor chooses a record's topic, e.g. TopicByType("cart."). It must not
	// return "". Default: Topic for every record.
	TopicFor func(eventstore.Record) string
	// Filter chooses which records are forwarded, e.g. Types("order.placed").
	// Records it refuses are skipped, and the checkpoint moves past them.
	// Default: every record.
	Filter func(eventstore.Record) bool

	// BatchSize bounds how many records one Publish call carries; it is also
	// the read-ahead buffer between the subscription and the publisher.
	// Default DefaultBatchSize.
	BatchSize int
	// MinBackoff and MaxBackoff bound the jittered exponential back-off between
	// attempts to publish, save the checkpoint, or subscribe again: each pause
	// is drawn around a step that doubles from MinBackoff, and none exceeds
	// MaxBackoff. Defaults DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration

	// Logger receives one line per change of state (failing, recovered), not
	// one per failed attempt. Default slog.Default().
	Logger *slog.Logger
	// Registerer, when set, receives the relay's Prometheus metrics.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports a Config that New would refuse, after defaults are applied.
// The error matches ErrInvalidConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("Store is required"))
	}
	if c.Publisher == nil {
		errs = append(errs, errors.New("Publisher is required"))
	}
	if c.Checkpoint == nil {
		errs = append(errs, errors.New("Checkpoint is required"))
	}
	if c.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("BatchSize is %d, want at least 1", c.BatchSize))
	}
	if c.MinBackoff < 0 || c.MaxBackoff < c.MinBackoff {
		errs = append(errs, fmt.Errorf("MinBackoff %s and MaxBackoff %s: want 0 < MinBackoff <= MaxBackoff", c.MinBackoff, c.MaxBackoff))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w %q: %w", ErrInvalidConfig, c.Name, errors.Join(errs...))
	}
	return nil
}

package saga

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/relay/consume"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/domain/customer"
	"github.com/eventline/eventline/sample/domain/order"
)

// Defaults Config.Validate and New apply to zero fields.
const (
	// DefaultName names the saga's router handlers, and so its
	// de-duplication keys.
	DefaultName = "order-credit"
	// DefaultPoisonTopic receives the messages that still fail after the
	// retries.
	DefaultPoisonTopic = "eventline.saga.poison"
	// DefaultMaxRetries is how many times a failing message is retried
	// before it is poisoned.
	DefaultMaxRetries = 5
	// DefaultMinBackoff and DefaultMaxBackoff bound the back-off between
	// retries.
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
	// DefaultCloseTimeout bounds how long Run waits for messages being
	// handled when its context ends.
	DefaultCloseTimeout = 30 * time.Second
	// DefaultHandleTimeout bounds the handling of one message.
	DefaultHandleTimeout = 30 * time.Second
)

// ErrInvalidConfig means a Config failed Validate.
var ErrInvalidConfig = errors.New("saga: invalid config")

// Config configures a Saga. Store, Registry, Subscriber and Publisher are
// required; every other field has a documented default used when it is zero.
type Config struct {
	// Name names the saga's router handlers ("<Name>/<topic>"), which are also
	// the prefix of its de-duplication keys: replicas of one saga must share
	// it. Default DefaultName.
	Name string
	// Store keeps the carts, orders and customers the saga sends commands to.
	// The saga does not close it.
	Store eventstore.Store
	// Registry decodes the events; cart, order and customer events must be
	// registered in it (cart.RegisterEvents, order.RegisterEvents,
	// customer.RegisterEvents).
	Registry *eventstore.Registry
	// Subscriber delivers the messages the relay publishes: a GoChannel in one
	// process, a watermill-redisstream subscriber with a consumer group
	// between processes. The saga does not close it.
	Subscriber message.Subscriber
	// Publisher publishes poisoned messages to PoisonTopic. The saga does not
	// close it.
	Publisher message.Publisher
	// Topics are the topics the relay publishes the saga's events to. The
	// saga subscribes to each and ignores event types it does not handle, so
	// one shared topic works as well as one topic per type (TopicsByType).
	// Default: relay.DefaultTopic.
	Topics []string
	// PoisonTopic receives messages that failed every retry, with watermill's
	// poison metadata (reason, original topic, handler). Default
	// DefaultPoisonTopic.
	PoisonTopic string
	// Dedup remembers which events the saga handled, by event id. Use
	// consume.RedisDedup when the saga runs in more than one process (or
	// restarts while its transport keeps messages); the in-process default,
	// consume.MemoryDedup, only suits one process with GoChannel.
	// De-duplication is an optimisation: every command the saga sends is
	// idempotent on its own.
	Dedup consume.DedupStore
	// MaxRetries is how many times a failing message is retried, with
	// exponential back-off from MinBackoff up to MaxBackoff, before it is
	// published to PoisonTopic and acked. Defaults DefaultMaxRetries,
	// DefaultMinBackoff, DefaultMaxBackoff. A negative MaxRetries disables
	// retries.
	MaxRetries             int
	MinBackoff, MaxBackoff time.Duration
	// CloseTimeout bounds how long Run waits for messages being handled once
	// its context ends. Default DefaultCloseTimeout.
	CloseTimeout time.Duration
	// HandleTimeout bounds one handling of one message (one attempt). The
	// saga's commands run on a context detached from the message's
	// cancellation, so that a shutdown lets a half-handled event finish
	// (within CloseTimeout) instead of failing it. Default
	// DefaultHandleTimeout.
	HandleTimeout time.Duration
	// Command is the base configuration of the saga's command handlers
	// (retries on concurrent writes); its Name is set per entity kind ("cart",
	// "order", "customer", the names the command API uses). Its Logger
	// defaults to Logger.
	Command command.Config
	// Logger receives a line per saga outcome (order confirmed, order
	// rejected) and the router's logs. Default slog.Default().
	Logger *slog.Logger
	// TracerProvider, when set, gives the saga OpenTelemetry spans: one
	// consumer span per message, child of the relay's publish span the
	// message carries (package relay/tracing), the spans of the commands it
	// sends (Command.TracerProvider defaults to it), and an "order <status>"
	// span when an order reaches its final state (confirmed or rejected).
	// nil: no spans.
	TracerProvider trace.TracerProvider
	// Registerer, when set, receives the saga's metric
	// eventline_saga_messages_total{type,result}.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if len(c.Topics) == 0 {
		c.Topics = []string{relay.DefaultTopic}
	}
	if c.PoisonTopic == "" {
		c.PoisonTopic = DefaultPoisonTopic
	}
	if c.Dedup == nil {
		c.Dedup, _ = consume.NewMemoryDedup(consume.MemoryDedupConfig{}) // the zero config is valid
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.HandleTimeout == 0 {
		c.HandleTimeout = DefaultHandleTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Command.TracerProvider == nil {
		c.Command.TracerProvider = c.TracerProvider
	}
	if c.Command.Logger == nil {
		c.Command.Logger = c.Logger
	}
	return c
}

// Validate reports a Config that New would refuse, after defaults are applied.
// The error matches ErrInvalidConfig and lists every problem.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("Config.Store is required"))
	}
	if c.Subscriber == nil {
		errs = append(errs, errors.New("Config.Subscriber is required"))
	}
	if c.Publisher == nil {
		errs = append(errs, errors.New("Config.Publisher (for the poison topic) is required"))
	}
	if c.Registry == nil {
		errs = append(errs, errors.New("Config.Registry is required"))
	} else {
		for _, v := range []any{
			cart.CheckedOut{}, cart.Reopened{},
			order.Placed{}, order.Confirmed{}, order.Rejected{},
			customer.Registered{}, customer.CreditReserved{}, customer.CreditRefused{}, customer.CreditReleased{},
		} {
			if _, ok := c.Registry.Name(v); !ok {
				errs = append(errs, fmt.Errorf("Config.Registry lacks %T (register the cart, order and customer events)", v))
			}
		}
	}
	seen := make(map[string]bool, len(c.Topics))
	for _, t := range c.Topics {
		if t == "" || seen[t] {
			errs = append(errs, fmt.Errorf("Config.Topics %q: each topic must be non-empty and listed once", c.Topics))
			break
		}
		seen[t] = true
	}
	if c.MinBackoff < 0 || c.MaxBackoff < c.MinBackoff {
		errs = append(errs, fmt.Errorf("Config.MinBackoff %s and MaxBackoff %s: want 0 < MinBackoff <= MaxBackoff", c.MinBackoff, c.MaxBackoff))
	}
	if c.CloseTimeout < 0 || c.HandleTimeout < 0 {
		errs = append(errs, fmt.Errorf("Config.CloseTimeout %s and HandleTimeout %s must not be negative", c.CloseTimeout, c.HandleTimeout))
	}
	cmd := c.Command
	cmd.Name = kindOrder
	if err := cmd.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("Config.Command: %w", err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w %q: %w", ErrInvalidConfig, c.Name, errors.Join(errs...))
	}
	return nil
}

// EventTypes returns the event types the saga reacts to. Pass them to
// relay.Types as the relay's Filter when the relay feeds only the saga.
func EventTypes() []string {
	return []string{cart.TypeCheckedOut, customer.TypeCreditReserved, customer.TypeCreditRefused}
}

// TopicsByType returns the topics a relay with TopicFor relay.TopicByType(prefix)
// publishes the saga's events to, for Config.Topics.
func TopicsByType(prefix string) []string {
	types := EventTypes()
	for i, t := range types {
		types[i] = prefix + t
	}
	return types
}

package consume

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
)

// DefaultPoisonTopic is the poison topic NewRouter uses when none is set.
const DefaultPoisonTopic = "eventline.poison"

// RouterConfig configures NewRouter. PoisonPublisher is required; zero fields
// take the documented defaults.
type RouterConfig struct {
	// Dedup de-duplicates by event id (see Deduplicator), for consumer
	// handlers and handlers that produce messages alike. Nil disables
	// de-duplication; consumers with side effects should set it.
	Dedup DedupStore
	// PoisonPublisher publishes messages that still fail after the retries.
	PoisonPublisher message.Publisher
	// PoisonTopic receives them. Default DefaultPoisonTopic.
	PoisonTopic string
	// MaxRetries is how many times a failing handler is retried before the
	// message is poisoned. Default 5; negative means no retry.
	MaxRetries int
	// MinBackoff, MaxBackoff: the back-off between retries doubles from
	// MinBackoff up to MaxBackoff, each randomised by ±50%. Defaults 100ms, 10s.
	MinBackoff, MaxBackoff time.Duration
	// CloseTimeout bounds how long Router.Close waits for handlers. Default 30s.
	CloseTimeout time.Duration
	// Logger receives the router's logs. Default slog.Default().
	Logger *slog.Logger
}

// Validate reports a RouterConfig that NewRouter would refuse. The error
// matches ErrInvalidConfig.
func (c RouterConfig) Validate() error {
	switch {
	case c.PoisonPublisher == nil:
		return fmt.Errorf("%w: RouterConfig.PoisonPublisher is required", ErrInvalidConfig)
	case c.MinBackoff < 0 || c.MaxBackoff < 0 || c.CloseTimeout < 0:
		return fmt.Errorf("%w: RouterConfig.MinBackoff %v, MaxBackoff %v and CloseTimeout %v must be >= 0",
			ErrInvalidConfig, c.MinBackoff, c.MaxBackoff, c.CloseTimeout)
	case c.MaxBackoff > 0 && c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("%w: RouterConfig.MaxBackoff %v is below MinBackoff %v", ErrInvalidConfig, c.MaxBackoff, c.MinBackoff)
	}
	return nil
}

// NewRouter returns a watermill router whose handlers all run under, from the
// outside in:
//
//  1. CorrelationID: messages a handler returns carry the incoming message's
//     correlation id (the relay sets watermill's key).
//  2. A Deduplicator's middleware (when Dedup is set): outside the poison
//     queue and the retries, so that it claims the event once for all
//     attempts, marks it done only when the handler finally succeeded (and
//     the router published the messages it produced: the Deduplicator also
//     decorates the handlers' publishers) or the message was poisoned, and
//     turns a concurrent duplicate delivery into a nack that is redelivered
//     later, never into a retry that could end in the poison queue.
//  3. PoisonQueue: outside Retry, so that only a message that failed every
//     retry is published to the poison topic and acked; if that publish
//     fails, the message is nacked. A message whose attempts ended because
//     its context ended (the router is closing) is nacked, not poisoned: it
//     did not fail, it was interrupted, and is redelivered later.
//  4. Retry: exponential back-off with jitter, with the message context reset
//     on each attempt. An error marked with Permanent is not retried: it goes
//     straight to the poison queue.
//  5. Recoverer: innermost, so that a panicking handler becomes an error that
//     Retry retries, PoisonQueue salvages and Deduplicate releases.
//
// Add handlers with AddConsumerHandler (or AddHandler), then Run the router.
func NewRouter(cfg RouterConfig) (*message.Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.PoisonTopic == "" {
		cfg.PoisonTopic = DefaultPoisonTopic
	}
	switch {
	case cfg.MaxRetries == 0:
		cfg.MaxRetries = 5
	case cfg.MaxRetries < 0:
		cfg.MaxRetries = 0
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = max(10*time.Second, cfg.MinBackoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	logger := watermill.NewSlogLogger(cfg.Logger)
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.CloseTimeout}, logger)
	if err != nil {
		return nil, fmt.Errorf("consume: new router: %w", err)
	}
	var dedup *Deduplicator
	if cfg.Dedup != nil {
		dedup = NewDeduplicator(cfg.Dedup)
	}
	mws, err := routerMiddleware(cfg, dedup, logger)
	if err != nil {
		return nil, err
	}
	r.AddMiddleware(mws...)
	if dedup != nil {
		r.AddPublisherDecorators(dedup.DecoratePublisher)
	}
	return r, nil
}

// routerMiddleware returns NewRouter's middleware, outermost first; cfg has its
// defaults applied. dedup, when not nil, de-duplicates (its publisher
// decorator is the caller's to add).
func routerMiddleware(cfg RouterConfig, dedup *Deduplicator, logger watermill.LoggerAdapter) ([]message.HandlerMiddleware, error) {
	poison, err := middleware.PoisonQueueWithFilter(cfg.PoisonPublisher, cfg.PoisonTopic, func(err error) bool {
		return !errors.As(err, new(*interruptedError))
	})
	if err != nil {
		return nil, fmt.Errorf("consume: poison queue: %w", err)
	}
	mws := []message.HandlerMiddleware{middleware.CorrelationID}
	if dedup != nil {
		mws = append(mws, dedup.Middleware)
	}
	return append(mws,
		poison,
		interrupted,
		middleware.Retry{
			MaxRetries:          cfg.MaxRetries,
			InitialInterval:     cfg.MinBackoff,
			MaxInterval:         cfg.MaxBackoff,
			Multiplier:          2,
			RandomizationFactor: 0.5,
			ResetContextOnRetry: true,
			ShouldRetry:         func(p middleware.RetryParams) bool { return !errors.Is(p.Err, ErrPermanent) },
			Logger:              logger,
		}.Middleware,
		middleware.Recoverer,
	), nil
}

// ErrInvalidConfig means a configuration failed its Validate.
var ErrInvalidConfig = errors.New("consume: invalid config")

// ErrPermanent marks a handler error that no retry can cure (a malformed
// message, say); wrap one with Permanent.
var ErrPermanent = errors.New("consume: permanent failure")

// Permanent marks err as permanent: NewRouter's handlers send the message to
// the poison queue at once instead of retrying it.
func Permanent(err error) error { return fmt.Errorf("%w: %w", ErrPermanent, err) }

// interruptedError is a failure that happened because the message's context
// ended, which the poison queue must not swallow.
type interruptedError struct{ err error }

func (e *interruptedError) Error() string { return "interrupted: " + e.err.Error() }
func (e *interruptedError) Unwrap() error { return e.err }

// interrupted sits between the poison queue and Retry: when the attempts ended
// with the message's context done, it marks the error so the message is
// nacked for redelivery rather than poisoned.
func interrupted(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		ctx := msg.Context()
		out, err := h(msg)
		if err != nil && ctx.Err() != nil {
			return out, &interruptedError{err: err}
		}
		return out, err
	}
}

package relay

import (
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
	// Dedup de-duplicates by event id (see Deduplicate). Nil disables
	// de-duplication; consumers with side effects should set it.
	Dedup DedupStore
	// PoisonPublisher publishes messages that still fail after the retries.
	PoisonPublisher message.Publisher
	// PoisonTopic receives them. Default DefaultPoisonTopic.
	PoisonTopic string
	// MaxRetries is how many times a failing handler is retried before the
	// message is poisoned. Default 5; negative means no retry.
	MaxRetries int
	// RetryInitial, RetryMax: the back-off between retries doubles from
	// RetryInitial up to RetryMax, each randomised by ±50%. Defaults 100ms, 10s.
	RetryInitial, RetryMax time.Duration
	// CloseTimeout bounds how long Router.Close waits for handlers. Default 30s.
	CloseTimeout time.Duration
	// Logger receives the router's logs. Default slog.Default().
	Logger *slog.Logger
}

// NewRouter returns a watermill router whose handlers all run under, from the
// outside in:
//
//  1. CorrelationID: messages a handler returns carry the incoming message's
//     correlation id (the relay sets watermill's key).
//  2. Deduplicate (when Dedup is set): outside the poison queue and the
//     retries, so that it claims the event once for all attempts, marks it
//     done only when the handler finally succeeded or the message was
//     poisoned, and turns a concurrent duplicate delivery into a nack that is
//     redelivered later, never into a retry that could end in the poison queue.
//  3. PoisonQueue: outside Retry, so that only a message that failed every
//     retry is published to the poison topic and acked; if that publish
//     fails, the message is nacked.
//  4. Retry: exponential back-off with jitter, with the message context reset
//     on each attempt.
//  5. Recoverer: innermost, so that a panicking handler becomes an error that
//     Retry retries, PoisonQueue salvages and Deduplicate releases.
//
// Add handlers with AddConsumerHandler (or AddHandler), then Run the router.
func NewRouter(cfg RouterConfig) (*message.Router, error) {
	if cfg.PoisonPublisher == nil {
		return nil, fmt.Errorf("%w: RouterConfig.PoisonPublisher is required", ErrInvalidConfig)
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
	if cfg.RetryInitial <= 0 {
		cfg.RetryInitial = 100 * time.Millisecond
	}
	if cfg.RetryMax < cfg.RetryInitial {
		cfg.RetryMax = max(10*time.Second, cfg.RetryInitial)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	logger := watermill.NewSlogLogger(cfg.Logger)
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.CloseTimeout}, logger)
	if err != nil {
		return nil, fmt.Errorf("relay: new router: %w", err)
	}
	poison, err := middleware.PoisonQueue(cfg.PoisonPublisher, cfg.PoisonTopic)
	if err != nil {
		return nil, fmt.Errorf("relay: poison queue: %w", err)
	}
	r.AddMiddleware(middleware.CorrelationID)
	if cfg.Dedup != nil {
		r.AddMiddleware(Deduplicate(cfg.Dedup))
	}
	r.AddMiddleware(
		poison,
		middleware.Retry{
			MaxRetries:          cfg.MaxRetries,
			InitialInterval:     cfg.RetryInitial,
			MaxInterval:         cfg.RetryMax,
			Multiplier:          2,
			RandomizationFactor: 0.5,
			ResetContextOnRetry: true,
			Logger:              logger,
		}.Middleware,
		middleware.Recoverer,
	)
	return r, nil
}

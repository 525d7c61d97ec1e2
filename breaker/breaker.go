package breaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// Defaults for Config fields left zero.
const (
	// DefaultFailures is how many consecutive failures open a breaker: a
	// few, so that one lost packet does not, while a dead dependency is cut
	// off within a handful of calls.
	DefaultFailures = 5
	// DefaultOpenFor is how long an open breaker refuses calls before it
	// lets a probe through (half-open).
	DefaultOpenFor = 5 * time.Second
	// DefaultProbes is how many calls a half-open breaker lets through; all
	// of them must succeed to close it.
	DefaultProbes = 1
)

// ErrOpen is matched (errors.Is) by every error a Breaker returns instead of
// making a call: it is open, or half-open with its probes already in flight.
var ErrOpen = errors.New("circuit breaker open")

// OpenError is the error a Breaker returns instead of making a call.
type OpenError struct {
	// Name is the breaker's name: the dependency it guards.
	Name string
	// RetryAfter is how long until the breaker lets a probe through
	// (at least one second, for an HTTP Retry-After header).
	RetryAfter time.Duration
}

func (e *OpenError) Error() string {
	return fmt.Sprintf("%s unavailable: circuit breaker open, retry in %s", e.Name, e.RetryAfter)
}

// Dependency returns Name: the dependency that is down.
func (e *OpenError) Dependency() string { return e.Name }

// Is makes an *OpenError match ErrOpen.
func (e *OpenError) Is(target error) bool { return target == ErrOpen }

// RetryAfterSeconds is e's RetryAfter in whole seconds, rounded up, as an
// HTTP Retry-After header says it.
func (e *OpenError) RetryAfterSeconds() string {
	return strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds())))
}

// State is a breaker's state.
type State = gobreaker.State

// The states, as gobreaker names them.
const (
	StateClosed   = gobreaker.StateClosed
	StateHalfOpen = gobreaker.StateHalfOpen
	StateOpen     = gobreaker.StateOpen
)

// Config configures a Breaker. Every field but Name has a usable zero value.
type Config struct {
	// Name is the dependency the breaker guards ("redis", "store",
	// "broker"): it labels the metrics, the log lines and OpenError.
	// Required.
	Name string
	// Failures is how many consecutive failed calls open the breaker.
	// 0 means DefaultFailures.
	Failures int
	// OpenFor is how long an open breaker refuses calls before a probe.
	// 0 means DefaultOpenFor.
	OpenFor time.Duration
	// Probes is how many calls a half-open breaker lets through; when all
	// succeed it closes, when one fails it opens again. 0 means DefaultProbes.
	Probes int
	// IsSuccessful reports whether a call's error still shows a working
	// dependency: a conflict, a not-found, a refused input are answers, not
	// outages, and must not open the breaker. nil counts every non-nil error
	// as a failure. Errors of a cancelled context (context.Canceled) never
	// count either way: the caller left, the dependency said nothing.
	IsSuccessful func(error) bool
	// Logger receives one line per state change (warn when it opens, info
	// otherwise). nil means slog.Default().
	Logger *slog.Logger
	// Registerer, when set, receives the breaker metrics
	// (eventline_breaker_state, eventline_breaker_transitions_total,
	// eventline_breaker_rejected_total), labelled with Name. Breakers with
	// different names share one set of collectors.
	Registerer prometheus.Registerer
}

// Validate reports a Config that New would refuse.
func (c Config) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("breaker: Config.Name is required")
	case c.Failures < 0:
		return fmt.Errorf("breaker: Config.Failures is %d, must be ≥ 0", c.Failures)
	case c.OpenFor < 0:
		return fmt.Errorf("breaker: Config.OpenFor is %v, must be ≥ 0", c.OpenFor)
	case c.Probes < 0:
		return fmt.Errorf("breaker: Config.Probes is %d, must be ≥ 0", c.Probes)
	case c.Failures > math.MaxUint32 || c.Probes > math.MaxUint32:
		return errors.New("breaker: Config.Failures and Probes must fit in 32 bits")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Failures == 0 {
		c.Failures = DefaultFailures
	}
	if c.OpenFor == 0 {
		c.OpenFor = DefaultOpenFor
	}
	if c.Probes == 0 {
		c.Probes = DefaultProbes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Breaker is a circuit breaker around one dependency (a
// gobreaker.TwoStepCircuitBreaker with logging, metrics and an error that
// says when to come back). It is safe for concurrent use.
type Breaker struct {
	cfg Config
	cb  *gobreaker.TwoStepCircuitBreaker[struct{}]
	m   *metrics

	mu       sync.Mutex
	openedAt time.Time // when it last opened
}

// New returns a closed Breaker.
func New(cfg Config) (*Breaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	b := &Breaker{cfg: cfg}
	if cfg.Registerer != nil {
		m, err := newMetrics(cfg.Registerer, cfg.Name)
		if err != nil {
			return nil, fmt.Errorf("breaker %s: metrics: %w", cfg.Name, err)
		}
		b.m = m
		m.setState(StateClosed)
	}
	failures := uint32(cfg.Failures)
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        cfg.Name,
		MaxRequests: uint32(cfg.Probes),
		Timeout:     cfg.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		// Called with gobreaker's lock held: it must not call back into cb.
		OnStateChange: b.changed,
		IsSuccessful: func(err error) bool {
			return err == nil || cfg.IsSuccessful != nil && cfg.IsSuccessful(err)
		},
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
	})
	return b, nil
}

// Must is New for configurations known to be valid; it panics on an invalid
// one.
func Must(cfg Config) *Breaker {
	b, err := New(cfg)
	if err != nil {
		panic(err)
	}
	return b
}

func (b *Breaker) changed(name string, from, to gobreaker.State) {
	if to == StateOpen {
		b.mu.Lock()
		b.openedAt = time.Now()
		b.mu.Unlock()
	}
	lvl := slog.LevelInfo
	if to == StateOpen {
		lvl = slog.LevelWarn
	}
	b.cfg.Logger.Log(context.Background(), lvl, "circuit breaker "+to.String(),
		"breaker", name, "from", from.String(), "to", to.String())
	if b.m != nil {
		b.m.transitions.WithLabelValues(name, to.String()).Inc()
		b.m.setState(to)
	}
}

// Name returns the breaker's name.
func (b *Breaker) Name() string { return b.cfg.Name }

// State returns the breaker's state now (an open breaker whose OpenFor has
// passed reports half-open).
func (b *Breaker) State() State { return b.cb.State() }

// Allow asks to make one call. When the breaker lets it through, done must be
// called exactly once with the call's outcome. Otherwise err is an
// *OpenError (matching ErrOpen) and the call must not be made.
func (b *Breaker) Allow() (done func(error), err error) {
	done, err = b.cb.Allow()
	if err != nil {
		return nil, b.refused()
	}
	return done, nil
}

// Do calls fn through the breaker: at once with an *OpenError when the
// breaker refuses, else fn, whose error is counted and returned as it is.
func (b *Breaker) Do(fn func() error) error {
	done, err := b.Allow()
	if err != nil {
		return err
	}
	err = fn()
	done(err)
	return err
}

// Call is Do for a function with a result.
func Call[T any](b *Breaker, fn func() (T, error)) (T, error) {
	done, err := b.Allow()
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := fn()
	done(err)
	return v, err
}

// Check returns an *OpenError when the breaker is open and nil otherwise,
// without counting as a call. Readiness probes and long-lived calls (a
// subscription) use it to fail fast without taking a half-open probe's
// place.
func (b *Breaker) Check() error {
	if b.cb.State() == StateOpen {
		return b.refused()
	}
	return nil
}

func (b *Breaker) refused() error {
	if b.m != nil {
		b.m.rejected.WithLabelValues(b.cfg.Name).Inc()
	}
	b.mu.Lock()
	wait := time.Until(b.openedAt.Add(b.cfg.OpenFor))
	b.mu.Unlock()
	// Half-open with the probes in flight, or a clock that moved: the
	// answer is known within about one OpenFor.
	if wait < time.Second {
		wait = time.Second
	}
	return &OpenError{Name: b.cfg.Name, RetryAfter: wait.Round(time.Millisecond)}
}

// metrics are the collectors every breaker of a registry shares.
type metrics struct {
	state       *prometheus.GaugeVec
	transitions *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	name        string
}

func newMetrics(reg prometheus.Registerer, name string) (*metrics, error) {
	state := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "eventline", Subsystem: "breaker", Name: "state",
		Help: "The breaker's state: 0 closed, 1 half-open, 2 open.",
	}, []string{"breaker"})
	transitions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "eventline", Subsystem: "breaker", Name: "transitions_total",
		Help: "State changes of the breaker, by the state it entered.",
	}, []string{"breaker", "state"})
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "eventline", Subsystem: "breaker", Name: "rejected_total",
		Help: "Calls refused at once because the breaker was open.",
	}, []string{"breaker"})
	cs := []prometheus.Collector{state, transitions, rejected}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			cs[i] = are.ExistingCollector
		}
	}
	m := &metrics{
		state:       cs[0].(*prometheus.GaugeVec),
		transitions: cs[1].(*prometheus.CounterVec),
		rejected:    cs[2].(*prometheus.CounterVec),
		name:        name,
	}
	// Every series exists from the start, so that rate() and alerts see a
	// zero before the first change.
	for _, s := range []State{StateClosed, StateHalfOpen, StateOpen} {
		m.transitions.WithLabelValues(name, s.String())
	}
	m.rejected.WithLabelValues(name)
	return m, nil
}

func (m *metrics) setState(s State) { m.state.WithLabelValues(m.name).Set(float64(s)) }

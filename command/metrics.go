package command

import (
	"context"
	"errors"
	"reflect"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventline/eventline/eventstore"
)

// The outcomes of a command, the outcome label of
// eventline_command_handled_total.
const (
	OutcomeOK                  = "ok"                   // handled (events appended, none decided, or a repeat)
	OutcomeRejected            = "rejected"             // the decider refused it (ErrRejected)
	OutcomeConflict            = "conflict"             // concurrent writes outlasted MaxAttempts (ErrConflict)
	OutcomeIdempotencyConflict = "idempotency_conflict" // the command id came with another command
	OutcomeInvalid             = "invalid"              // a bad id or command id (ErrInvalidID)
	OutcomeCanceled            = "canceled"             // the caller's context ended
	OutcomeError               = "error"                // the store or the registry failed
)

// Outcome classifies the error Handle returned into one of the Outcome
// constants.
func Outcome(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, ErrRejected):
		return OutcomeRejected
	case errors.Is(err, ErrIdempotencyConflict):
		return OutcomeIdempotencyConflict
	case errors.Is(err, ErrConflict):
		return OutcomeConflict
	case errors.Is(err, ErrInvalidID), errors.Is(err, eventstore.ErrInvalidStreamID):
		return OutcomeInvalid
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return OutcomeCanceled
	}
	return OutcomeError
}

// metrics are a Handler's collectors, labelled with its Config.Name (entity).
// Handlers registered on one Registerer share the collectors.
type metrics struct {
	handled          *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	append           prometheus.Observer
	conflicts        prometheus.Counter
	retries, repeats prometheus.Counter
	entity           string
}

func newMetrics(reg prometheus.Registerer, entity string) (*metrics, error) {
	opts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: "eventline", Subsystem: "command", Name: name, Help: help}
	}
	cs := []prometheus.Collector{
		prometheus.NewCounterVec(opts("handled_total", "Commands handled, by entity, command type and outcome."),
			[]string{"entity", "command", "outcome"}),
		prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "eventline", Subsystem: "command", Name: "handle_duration_seconds",
			Help:    "Time to handle one command (load, fold, decide, append, retries), by entity and command type.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"entity", "command"}),
		prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "eventline", Subsystem: "command", Name: "append_duration_seconds",
			Help:    "Time of one append to the event store, group-commit wait included, by entity.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"entity"}),
		prometheus.NewCounterVec(opts("conflicts_total", "Appends refused because another writer moved the stream first."), []string{"entity"}),
		prometheus.NewCounterVec(opts("retries_total", "Commands loaded and decided again after a conflict."), []string{"entity"}),
		prometheus.NewCounterVec(opts("repeats_total", "Idempotent commands answered with the result of their first handling."), []string{"entity"}),
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			cs[i] = are.ExistingCollector
		}
	}
	return &metrics{
		handled:   cs[0].(*prometheus.CounterVec),
		duration:  cs[1].(*prometheus.HistogramVec),
		append:    cs[2].(*prometheus.HistogramVec).WithLabelValues(entity),
		conflicts: cs[3].(*prometheus.CounterVec).WithLabelValues(entity),
		retries:   cs[4].(*prometheus.CounterVec).WithLabelValues(entity),
		repeats:   cs[5].(*prometheus.CounterVec).WithLabelValues(entity),
		entity:    entity,
	}, nil
}

// commandType names a command for the command label: its concrete type's
// name, without the package, pointer or not.
func commandType(cmd any) string {
	t := reflect.TypeOf(cmd)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Name() == "" {
		return "unknown"
	}
	return t.Name()
}

func (m *metrics) observe(cmd any, start time.Time, err error) {
	if m == nil {
		return
	}
	ct := commandType(cmd)
	m.handled.WithLabelValues(m.entity, ct, Outcome(err)).Inc()
	m.duration.WithLabelValues(m.entity, ct).Observe(time.Since(start).Seconds())
}

func (m *metrics) conflict(retried bool) {
	if m == nil {
		return
	}
	m.conflicts.Inc()
	if retried {
		m.retries.Inc()
	}
}

func (m *metrics) repeat() {
	if m != nil {
		m.repeats.Inc()
	}
}

func (m *metrics) appended(start time.Time) {
	if m != nil {
		m.append.Observe(time.Since(start).Seconds())
	}
}

package saga

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/command"
)

// metrics are the saga's collectors beyond the message counter. Sagas
// registered on one Registerer share them.
type metrics struct {
	steps         *prometheus.CounterVec
	compensations prometheus.Counter
	completion    *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	cs := []prometheus.Collector{
		prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "eventline", Subsystem: "saga", Name: "steps_total",
			Help: "Saga steps taken (commands sent), by step and outcome (the command outcomes of package command).",
		}, []string{"step", "outcome"}),
		prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "eventline", Subsystem: "saga", Name: "compensations_total",
			Help: "Compensations finished: a rejected order's cart reopened.",
		}),
		prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "eventline", Subsystem: "saga", Name: "order_completion_seconds",
			Help:    "Time from an order's placement to its final state (confirmed or rejected), by status.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"status"}),
	}
	if reg != nil {
		for i, c := range cs {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					return nil, err
				}
				cs[i] = are.ExistingCollector
			}
		}
	}
	m := &metrics{
		steps:         cs[0].(*prometheus.CounterVec),
		compensations: cs[1].(prometheus.Counter),
		completion:    cs[2].(*prometheus.HistogramVec),
	}
	for _, s := range []string{StepPlace, StepReserve, StepConfirm, StepReject, StepReopen, StepRelease} {
		m.steps.WithLabelValues(s, command.OutcomeOK)
	}
	m.compensations.Add(0)
	return m, nil
}

// step counts one step's command.
func (m *metrics) step(name string, err error) {
	m.steps.WithLabelValues(name, command.Outcome(err)).Inc()
}

// completed observes the time since order orderID was placed, now that it
// reached status. A redelivered message that repeats the final step
// observes again.
func (s *Saga) completed(ctx context.Context, orderID, status string) {
	_, span := s.tracer.Start(ctx, "order "+status, trace.WithAttributes(
		attribute.String("eventline.order.id", orderID), attribute.String("eventline.order.status", status)))
	defer span.End()
	stream, err := s.orders.StreamID(orderID)
	if err != nil {
		return
	}
	for rec, err := range s.cfg.Store.ReadStream(ctx, stream, 1) {
		if err == nil && !rec.RecordedAt.IsZero() {
			s.metrics.completion.WithLabelValues(status).Observe(time.Since(rec.RecordedAt).Seconds())
		}
		return
	}
}

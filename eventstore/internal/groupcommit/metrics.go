package groupcommit

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a store's group-commit collectors (eventline_store_*),
// labelled with the backend. A nil *Metrics records nothing.
type Metrics struct {
	appends, events, seconds prometheus.Observer
}

// NewMetrics registers the group-commit collectors on reg (stores of one
// backend share them) and returns the Metrics of backend.
func NewMetrics(reg prometheus.Registerer, backend string) (*Metrics, error) {
	hist := func(name, help string, buckets []float64) prometheus.Collector {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "eventline", Subsystem: "store", Name: name, Help: help, Buckets: buckets,
		}, []string{"backend"})
	}
	cs := []prometheus.Collector{
		hist("group_commit_appends", "Appends committed together in one transaction (one fsync), by backend.",
			prometheus.ExponentialBuckets(1, 2, 12)),
		hist("group_commit_events", "Events committed together in one transaction, by backend.",
			prometheus.ExponentialBuckets(1, 2, 14)),
		hist("commit_duration_seconds", "Time of one group commit, from BEGIN to the end of COMMIT (its fsync included), by backend.",
			prometheus.ExponentialBuckets(0.0001, 2, 16)),
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
	return &Metrics{
		appends: cs[0].(*prometheus.HistogramVec).WithLabelValues(backend),
		events:  cs[1].(*prometheus.HistogramVec).WithLabelValues(backend),
		seconds: cs[2].(*prometheus.HistogramVec).WithLabelValues(backend),
	}, nil
}

// Committed records one group commit of appends appends holding events
// events, which took d.
func (m *Metrics) Committed(appends, events int, d time.Duration) {
	if m == nil {
		return
	}
	m.appends.Observe(float64(appends))
	m.events.Observe(float64(events))
	m.seconds.Observe(d.Seconds())
}

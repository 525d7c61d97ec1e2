package projection

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are one runner's Prometheus collectors, labelled with the
// projection's name and version. Runners of the same projection in one process
// share the collectors registered first.
type metrics struct {
	applied, skipped, batches, fenced, deadLetters, retries prometheus.Counter
	batchSeconds                                            prometheus.Observer
	lagEvents, lagSeconds                                   prometheus.Gauge
	state                                                   *prometheus.GaugeVec
	labels                                                  prometheus.Labels
}

func newMetrics(reg prometheus.Registerer, name string, version int) (*metrics, error) {
	labels := []string{"projection", "version"}
	counter := func(n, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "eventline", Subsystem: "projection", Name: n, Help: help}, labels)
	}
	gauge := func(n, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "eventline", Subsystem: "projection", Name: n, Help: help}, labels)
	}
	applied := counter("events_applied_total", "Records applied to the read model.")
	skipped := counter("events_skipped_total", "Records skipped because the projection does not handle their type.")
	batches := counter("batches_total", "Batches committed.")
	fenced := counter("fenced_batches_total", "Batches refused by the fence: the runner no longer held the lease, or the checkpoint in Redis was not the one it last wrote.")
	dead := counter("dead_letters_total", "Records set aside by the dead-letter policy.")
	retries := counter("retries_total", "Times the runner backed off after Redis or the store failed.")
	batchSeconds := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "eventline", Subsystem: "projection", Name: "batch_duration_seconds",
		Help:    "Time to apply and commit one batch.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	}, labels)
	lagEvents := gauge("lag_events", "Records between the checkpoint and the head of the log (-1: not computable).")
	lagSeconds := gauge("lag_seconds", "Age of the last applied record while the model lags, 0 when caught up.")
	state := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "eventline", Subsystem: "projection", Name: "state",
		Help: "1 for the runner's current state, 0 for the others."}, append(labels, "state"))

	cs := []prometheus.Collector{applied, skipped, batches, fenced, dead, retries, batchSeconds, lagEvents, lagSeconds, state}
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
	v := strconv.Itoa(version)
	lv := prometheus.Labels{"projection": name, "version": v}
	return &metrics{
		applied:      cs[0].(*prometheus.CounterVec).With(lv),
		skipped:      cs[1].(*prometheus.CounterVec).With(lv),
		batches:      cs[2].(*prometheus.CounterVec).With(lv),
		fenced:       cs[3].(*prometheus.CounterVec).With(lv),
		deadLetters:  cs[4].(*prometheus.CounterVec).With(lv),
		retries:      cs[5].(*prometheus.CounterVec).With(lv),
		batchSeconds: cs[6].(*prometheus.HistogramVec).With(lv),
		lagEvents:    cs[7].(*prometheus.GaugeVec).With(lv),
		lagSeconds:   cs[8].(*prometheus.GaugeVec).With(lv),
		state:        cs[9].(*prometheus.GaugeVec),
		labels:       lv,
	}, nil
}

func (m *metrics) setState(s State) {
	for _, x := range allStates {
		val := 0.0
		if x == s {
			val = 1
		}
		m.state.With(prometheus.Labels{"projection": m.labels["projection"], "version": m.labels["version"], "state": string(x)}).Set(val)
	}
}

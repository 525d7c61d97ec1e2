package httpjson

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts and times the requests of one API:
// eventline_http_requests_total{api, route, status} and
// eventline_http_request_duration_seconds{api, route}. The route label is
// the pattern a handler is registered under ("GET /carts/{id}"), never the
// path, so that the number of series stays that of the routes. Each
// route's status="200" series exists from the start, at 0.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics returns the metrics of the API named api ("command", "query",
// "web", "ops"), registered in reg unless reg is nil. The APIs of a process
// share the metric names and differ by the api label; two Metrics of the same
// api in one registry share their series.
func NewMetrics(api string, reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventline_http_requests_total", ConstLabels: prometheus.Labels{"api": api},
			Help: "HTTP requests answered, by API, route and status.",
		}, []string{"route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "eventline_http_request_duration_seconds", ConstLabels: prometheus.Labels{"api": api},
			Help:    "Time to answer an HTTP request, by API and route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"route"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c in reg, or returns the collector of the same
// metric reg already holds.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	if err != nil {
		return c, fmt.Errorf("httpjson: register HTTP metrics: %w", err)
	}
	return c, nil
}

// Route returns h, counted and timed under route, the pattern h is
// registered under.
func (m *Metrics) Route(route string, h http.Handler) http.Handler {
	// Resolved once: a request costs no label lookup on the common path.
	ok := m.requests.WithLabelValues(route, "200")
	dur := m.duration.WithLabelValues(route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &StatusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		if code := sw.Status(); code == http.StatusOK {
			ok.Inc()
		} else {
			m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		}
		dur.Observe(time.Since(start).Seconds())
	})
}

// HandleFunc registers f on mux under pattern, counted and timed.
func (m *Metrics) HandleFunc(mux *http.ServeMux, pattern string, f http.HandlerFunc) {
	mux.Handle(pattern, m.Route(pattern, f))
}

// StatusWriter is a ResponseWriter that remembers the status written.
type StatusWriter struct {
	http.ResponseWriter
	code int
}

// WriteHeader records code and passes it on.
func (w *StatusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write records the implicit 200 of a body written without a status.
func (w *StatusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Status returns the status written, 200 when the handler wrote none.
func (w *StatusWriter) Status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// Unwrap lets http.ResponseController reach the underlying writer (Flush
// for event streams, deadlines).
func (w *StatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

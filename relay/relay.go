package relay

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/batch"
	"github.com/eventline/eventline/internal/retry"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrRunning means Run was called on a Relay that is already running.
var ErrRunning = errors.New("relay: already running")

// Relay forwards committed records from an event store to a watermill
// Publisher, at least once, in position order, with its own checkpoint. Create
// one with New and call Run.
type Relay struct {
	cfg     Config
	running atomic.Bool
	metrics metrics

	mu     sync.Mutex
	status Status
	// failing remembers which operations are failing, so each change of state
	// is logged once rather than once per attempt.
	failing map[string]bool
}

// Status is a snapshot of a relay's progress.
type Status struct {
	// Position is the last position saved to the checkpoint: every record up to
	// it was published or skipped by the filter.
	Position eventstore.Position
	// Published counts messages published, Skipped records refused by the
	// filter, since New. Re-published batches count again.
	Published, Skipped uint64
	// PublishFailures and CheckpointFailures count failed attempts.
	PublishFailures, CheckpointFailures uint64
	// Running is true while Run runs; Leader while it holds its lease (always,
	// with no lease).
	Running, Leader bool
	// LastError is the latest failure, cleared when the failing operation
	// succeeds again.
	LastError string
}

// New returns a relay for cfg, which must pass Validate. With a Registerer, the
// relay's metrics are registered there (labelled with cfg.Name) and New fails
// if a relay of the same name already registered.
func New(cfg Config) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	r := &Relay{cfg: cfg, failing: map[string]bool{}, metrics: newMetrics(cfg.Name)}
	if cfg.Registerer != nil {
		if err := r.metrics.register(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("relay %q: register metrics: %w", cfg.Name, err)
		}
	}
	return r, nil
}

// Status returns a snapshot of the relay's progress.
func (r *Relay) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// Run forwards records until ctx ends, then returns nil. It loads the checkpoint
// (retrying while it cannot), subscribes to the store after it, and publishes
// in batches, saving the checkpoint after each batch is published. Failures to
// publish, to save the checkpoint or of the subscription are retried with
// jittered back-off; they never make the relay skip a record. Run returns an
// error only when the store is closed (matching eventstore.ErrClosed) or when
// it is already running (ErrRunning).
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: %q", ErrRunning, r.cfg.Name)
	}
	defer r.running.Store(false)
	r.setStatus(func(s *Status) { s.Running = true })
	defer r.setStatus(func(s *Status) { s.Running, s.Leader = false, false })

	if r.cfg.Lease == nil {
		r.setStatus(func(s *Status) { s.Leader = true })
		return r.runHeld(ctx)
	}
	for {
		held, release, err := r.cfg.Lease.Acquire(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("relay %q: acquire lease: %w", r.cfg.Name, err)
		}
		r.setStatus(func(s *Status) { s.Leader = true })
		r.cfg.Logger.Info("relay: lease acquired", "relay", r.cfg.Name)
		err = r.runHeld(held)
		release()
		r.setStatus(func(s *Status) { s.Leader = false })
		if ctx.Err() != nil || err != nil {
			return err
		}
		r.cfg.Logger.Warn("relay: lease lost; waiting to acquire it again", "relay", r.cfg.Name)
	}
}

// runHeld runs the relay until ctx ends: nil then, or an error it cannot
// recover from.
func (r *Relay) runHeld(ctx context.Context) error {
	var pos eventstore.Position
	err := r.retry(ctx, "load checkpoint", func() error {
		var err error
		pos, err = r.cfg.Checkpoint.Load(ctx)
		return err
	})
	if err != nil {
		return nil // only ctx ends a retry
	}
	r.setStatus(func(s *Status) { s.Position = pos })
	r.metrics.position.Set(float64(pos.Commit))
	// resubscribe paces subscriptions that fail in a row before delivering
	// anything; a subscription that delivers resets it, so that a rare
	// failure is retried after about MinBackoff, not after MaxBackoff.
	resubscribe := retry.New(r.cfg.MinBackoff, r.cfg.MaxBackoff, retry.EqualJitter)
	failures := 0
	for {
		err := r.forward(ctx, &pos, resubscribe, &failures)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, eventstore.ErrClosed):
			return fmt.Errorf("relay %q: %w", r.cfg.Name, err)
		case errors.Is(err, ErrLeaseLost):
			// Stop at once: Run acquires the lease again and loads the
			// checkpoint as the lease's Redis holds it now.
			r.cfg.Logger.Warn("relay: checkpoint refused, the lease is lost", "relay", r.cfg.Name, "error", err)
			return nil
		}
		r.fail("subscribe", fmt.Errorf("relay %q: subscription after %s: %w", r.cfg.Name, pos, err))
		if retry.Sleep(ctx, resubscribe.Next()) != nil {
			return nil
		}
		failures++
	}
}

// forward subscribes after *pos and publishes until the subscription fails or
// ctx ends, advancing *pos as batches are published and checkpointed. Once the
// subscription has delivered a batch it marks "subscribe" recovered and
// resets resubscribe and *failures.
func (r *Relay) forward(ctx context.Context, pos *eventstore.Position, resubscribe *retry.Backoff, failures *int) error {
	// The batcher's buffer is the read-ahead: when the publisher is slow or
	// failing it fills, and the subscription stops pulling from the store.
	// That is the relay's back-pressure. A batch closes as soon as no record
	// is ready, so a quiet log is relayed record by record at once.
	from := *pos
	b, err := batch.Start(ctx, func(ctx context.Context) iter.Seq2[eventstore.Record, error] {
		return r.cfg.Store.Subscribe(ctx, from)
	}, batch.Config{Size: r.cfg.BatchSize})
	if err != nil {
		return err
	}
	defer b.Stop()
	for {
		recs, subErr := b.Next(ctx, nil)
		if len(recs) > 0 {
			if r.isFailing("subscribe") {
				r.recovered("subscribe", *failures)
			}
			resubscribe.Reset()
			*failures = 0
			if err := r.publishBatch(ctx, recs); err != nil {
				return err
			}
			last := recs[len(recs)-1].Position
			if err := r.retry(ctx, "save checkpoint", func() error { return r.cfg.Checkpoint.Save(ctx, last) }); err != nil {
				return err
			}
			*pos = last
			r.setStatus(func(s *Status) { s.Position = last })
			r.metrics.position.Set(float64(last.Commit))
			lag := 0.0
			if b.Pending() > 0 {
				lag = time.Since(recs[len(recs)-1].RecordedAt).Seconds()
			}
			r.metrics.lagSeconds.Set(lag)
		}
		if subErr != nil {
			return subErr
		}
	}
}

// publishBatch publishes the records of batch that pass the filter, one Publish
// call per run of consecutive records with the same topic, in order. A failed
// call is retried (only that call: the earlier ones succeeded) until it succeeds
// or ctx ends.
func (r *Relay) publishBatch(ctx context.Context, batch []eventstore.Record) error {
	var skipped uint64
	for start := 0; start < len(batch); {
		if r.cfg.Filter != nil && !r.cfg.Filter(batch[start]) {
			skipped++
			start++
			continue
		}
		topic := r.topic(batch[start])
		end := start + 1
		for end < len(batch) && (r.cfg.Filter == nil || r.cfg.Filter(batch[end])) && r.topic(batch[end]) == topic {
			end++
		}
		run := batch[start:end]
		err := r.retry(ctx, "publish", func() error {
			if topic == "" {
				return fmt.Errorf("relay %q: TopicFor returned no topic for event %s at position %s", r.cfg.Name, run[0].ID, run[0].Position)
			}
			// Fresh messages per attempt: a publisher may have changed or acked
			// the ones it failed on.
			msgs := make([]*message.Message, len(run))
			for i, rec := range run {
				msgs[i] = NewMessage(ctx, rec)
			}
			if err := r.cfg.Publisher.Publish(topic, msgs...); err != nil {
				return fmt.Errorf("relay %q: publish positions %s..%s to %q: %w",
					r.cfg.Name, run[0].Position, run[len(run)-1].Position, topic, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		r.metrics.published.Add(float64(len(run)))
		r.setStatus(func(s *Status) { s.Published += uint64(len(run)) })
		start = end
	}
	if skipped > 0 {
		r.metrics.skipped.Add(float64(skipped))
		r.setStatus(func(s *Status) { s.Skipped += skipped })
	}
	return nil
}

func (r *Relay) topic(rec eventstore.Record) string {
	if r.cfg.TopicFor == nil {
		return r.cfg.Topic
	}
	return r.cfg.TopicFor(rec)
}

// retry runs op until it succeeds, waiting a jittered back-off between
// attempts (retry.EqualJitter: instances failing together do not retry in
// lockstep). It returns nil on success and ctx's error when ctx ends first.
func (r *Relay) retry(ctx context.Context, what string, op func() error) error {
	var pause *retry.Backoff
	for attempt := 0; ; attempt++ {
		err := op()
		if err == nil {
			r.recovered(what, attempt)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrLeaseLost) {
			// Not a failure to retry: this holding is over.
			return err
		}
		switch what {
		case "publish":
			r.metrics.publishFailures.Inc()
			r.setStatus(func(s *Status) { s.PublishFailures++ })
		case "save checkpoint", "load checkpoint":
			r.metrics.checkpointFailures.Inc()
			r.setStatus(func(s *Status) { s.CheckpointFailures++ })
		}
		r.fail(what, err)
		if pause == nil {
			pause = retry.New(r.cfg.MinBackoff, r.cfg.MaxBackoff, retry.EqualJitter)
		}
		if err := retry.Sleep(ctx, pause.Next()); err != nil {
			return err
		}
	}
}

// fail logs err the first time what fails after having worked.
func (r *Relay) fail(what string, err error) {
	r.mu.Lock()
	was := r.failing[what]
	r.failing[what] = true
	r.status.LastError = err.Error()
	r.mu.Unlock()
	r.metrics.failing.Set(1)
	if !was {
		r.cfg.Logger.Warn("relay: "+what+" failing; retrying with back-off", "relay", r.cfg.Name, "error", err)
	}
}

// isFailing reports whether what is failing.
func (r *Relay) isFailing(what string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failing[what]
}

// recovered logs once that what works again after failing.
func (r *Relay) recovered(what string, attempts int) {
	r.mu.Lock()
	was := r.failing[what]
	delete(r.failing, what)
	if len(r.failing) == 0 {
		r.status.LastError = ""
	}
	still := len(r.failing) > 0
	r.mu.Unlock()
	if was {
		if !still {
			r.metrics.failing.Set(0)
		}
		r.cfg.Logger.Info("relay: "+what+" recovered", "relay", r.cfg.Name, "failed_attempts", attempts)
	}
}

func (r *Relay) setStatus(f func(*Status)) {
	r.mu.Lock()
	f(&r.status)
	r.mu.Unlock()
}

type metrics struct {
	published, skipped, publishFailures, checkpointFailures prometheus.Counter
	position, failing, lagSeconds                           prometheus.Gauge
}

func newMetrics(name string) metrics {
	labels := prometheus.Labels{"relay": name}
	counter := func(n, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "eventline", Subsystem: "relay", Name: n, Help: help, ConstLabels: labels})
	}
	gauge := func(n, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "eventline", Subsystem: "relay", Name: n, Help: help, ConstLabels: labels})
	}
	return metrics{
		published:          counter("published_events_total", "Messages published (re-published batches count again)."),
		skipped:            counter("skipped_events_total", "Records the filter refused."),
		publishFailures:    counter("publish_failures_total", "Failed Publish attempts."),
		checkpointFailures: counter("checkpoint_failures_total", "Failed checkpoint loads and saves."),
		position:           gauge("checkpoint_position", "Commit part of the last checkpointed position."),
		failing:            gauge("failing", "1 while an operation is failing and being retried, else 0."),
		lagSeconds:         gauge("lag_seconds", "Age of the last published record while more records wait, 0 when caught up."),
	}
}

func (m metrics) register(reg prometheus.Registerer) error {
	cs := []prometheus.Collector{m.published, m.skipped, m.publishFailures, m.checkpointFailures, m.position, m.failing, m.lagSeconds}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	return nil
}

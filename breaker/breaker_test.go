package breaker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eventline/eventline/breaker"
)

var errDown = errors.New("connection refused")
var errConflict = errors.New("conflict")

func newBreaker(t *testing.T, reg prometheus.Registerer, openFor time.Duration) *breaker.Breaker {
	t.Helper()
	b, err := breaker.New(breaker.Config{
		Name: "redis", Failures: 3, OpenFor: openFor, Registerer: reg,
		IsSuccessful: func(err error) bool { return errors.Is(err, errConflict) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOpensAfterConsecutiveFailuresAndFailsFast(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := newBreaker(t, reg, time.Hour)
	calls := 0
	fail := func() error { calls++; return errDown }
	for i := 0; i < 3; i++ {
		if err := b.Do(fail); !errors.Is(err, errDown) {
			t.Fatalf("call %d: %v, want the dependency's error", i, err)
		}
	}
	if b.State() != breaker.StateOpen {
		t.Fatalf("state %v after 3 failures, want open", b.State())
	}
	err := b.Do(fail)
	var oe *breaker.OpenError
	if !errors.As(err, &oe) || !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("open breaker returned %v, want an *OpenError matching ErrOpen", err)
	}
	if calls != 3 {
		t.Fatalf("the open breaker made the call (%d calls)", calls)
	}
	if oe.Name != "redis" || oe.RetryAfter < 59*time.Minute || oe.RetryAfterSeconds() == "0" {
		t.Fatalf("OpenError %+v: want name redis and about an hour to wait", oe)
	}
	if !strings.Contains(err.Error(), "redis") {
		t.Fatalf("message %q does not name the dependency", err)
	}
	if got := value(t, reg, "eventline_breaker_state", "redis"); got != 2 {
		t.Fatalf("eventline_breaker_state = %v, want 2 (open)", got)
	}
	if got := counter(t, reg, "eventline_breaker_rejected_total", "redis"); got != 1 {
		t.Fatalf("rejected_total = %v, want 1", got)
	}
	if got := counter(t, reg, "eventline_breaker_transitions_total", "redis", "open"); got != 1 {
		t.Fatalf("transitions_total{state=open} = %v, want 1", got)
	}
	if err := b.Check(); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("Check of an open breaker: %v", err)
	}
}

func TestAnswersAndCancellationsDoNotOpen(t *testing.T) {
	b := newBreaker(t, nil, time.Hour)
	for i := 0; i < 10; i++ {
		_ = b.Do(func() error { return errDown })
		_ = b.Do(func() error { return errConflict }) // an answer: resets the run of failures
		_ = b.Do(func() error { return context.Canceled })
	}
	if b.State() != breaker.StateClosed {
		t.Fatalf("state %v, want closed: conflicts are answers and cancellations say nothing", b.State())
	}
}

func TestHalfOpenProbeClosesOrReopens(t *testing.T) {
	b := newBreaker(t, nil, 20*time.Millisecond)
	for i := 0; i < 3; i++ {
		_ = b.Do(func() error { return errDown })
	}
	waitState(t, b, breaker.StateHalfOpen)
	// A failed probe opens it again.
	if err := b.Do(func() error { return errDown }); !errors.Is(err, errDown) {
		t.Fatalf("probe: %v", err)
	}
	if s := b.State(); s != breaker.StateOpen {
		t.Fatalf("state %v after a failed probe, want open", s)
	}
	waitState(t, b, breaker.StateHalfOpen)
	// While the probe is in flight, other calls are refused.
	done, err := b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := breaker.Call(b, func() (int, error) { return 1, nil }); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("second call during the probe: %v, want ErrOpen", err)
	}
	done(nil)
	if s := b.State(); s != breaker.StateClosed {
		t.Fatalf("state %v after a good probe, want closed", s)
	}
	if v, err := breaker.Call(b, func() (int, error) { return 7, nil }); v != 7 || err != nil {
		t.Fatalf("Call = %v, %v", v, err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []breaker.Config{{}, {Name: "x", Failures: -1}, {Name: "x", OpenFor: -time.Second}, {Name: "x", Probes: -2}} {
		if _, err := breaker.New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

func TestBreakersShareCollectors(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := newBreaker(t, reg, time.Hour)
	if _, err := breaker.New(breaker.Config{Name: "store", Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := breaker.New(breaker.Config{Name: "redis", Registerer: reg}); err != nil {
		t.Fatal(err) // a second breaker of the same name (two roles in one process)
	}
	_ = a
	n, err := testutil.GatherAndCount(reg, "eventline_breaker_state")
	if err != nil || n != 2 {
		t.Fatalf("state series = %d, %v; want 2 (redis, store)", n, err)
	}
}

func waitState(t *testing.T, b *breaker.Breaker, want breaker.State) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.State() != want {
		if time.Now().After(deadline) {
			t.Fatalf("state %v, still not %v", b.State(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	return value(t, reg, name, labels...)
}

// value returns the value of the series of name whose label values are
// labels, in label-name order.
func value(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for i, l := range m.GetLabel() {
				if l.GetValue() != labels[i] {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

// BenchmarkOpen is the cost of a call refused by an open breaker: what a
// request pays instead of the dependency's timeout.
func BenchmarkOpen(b *testing.B) {
	br := breaker.Must(breaker.Config{Name: "redis", Failures: 1, OpenFor: time.Hour, Registerer: prometheus.NewRegistry()})
	_ = br.Do(func() error { return errDown })
	b.ReportAllocs()
	for b.Loop() {
		if err := br.Do(func() error { return nil }); !errors.Is(err, breaker.ErrOpen) {
			b.Fatal(err)
		}
	}
}

// BenchmarkClosed is the cost the breaker adds to a call that goes through.
func BenchmarkClosed(b *testing.B) {
	br := breaker.Must(breaker.Config{Name: "redis", Registerer: prometheus.NewRegistry()})
	b.ReportAllocs()
	for b.Loop() {
		_ = br.Do(func() error { return nil })
	}
}

package saga_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/domain/order"
)

// A refused order counts its steps, one compensation and one completion as
// rejected; a confirmed one a completion as confirmed.
func TestStepsCompensationsAndCompletionAreCounted(t *testing.T) {
	w := newWorld(t)
	reg := prometheus.NewRegistry()
	inProcess(t, w, nil, reg)
	w.register("ann", 300)
	w.checkout("c1", "ann", "o1") // 399 cents: refused
	w.waitOrder("o1", order.StatusRejected)
	waitFor(t, "cart c1 reopened", func() bool { return w.cartState("c1").Status == cart.StatusOpen })
	waitFor(t, "the compensation counted", func() bool { return value(t, reg, "eventline_saga_compensations_total", nil) == 1 })
	w.cart("c1", "req-o2", cart.ChangeQuantity{ProductID: "apple", Quantity: 1}, cart.CheckOut{OrderID: "o2"})
	w.waitOrder("o2", order.StatusConfirmed)
	waitFor(t, "the confirmation counted", func() bool {
		return histCount(t, reg, "eventline_saga_order_completion_seconds", "confirmed") == 1
	})
	if n := histCount(t, reg, "eventline_saga_order_completion_seconds", "rejected"); n != 1 {
		t.Fatalf("%d rejected completions observed, want 1", n)
	}
	for _, st := range []string{"place", "reserve", "reject", "reopen", "confirm"} {
		if v := value(t, reg, "eventline_saga_steps_total", map[string]string{"step": st, "outcome": "ok"}); v < 1 {
			t.Errorf("step %s ok counted %v times, want ≥ 1", st, v)
		}
	}
}

func value(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := want[l.GetName()]; ok && v != l.GetValue() {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func histCount(t *testing.T, g prometheus.Gatherer, name, status string) uint64 {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "status" && l.GetValue() == status {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

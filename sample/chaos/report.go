package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"maps"
	"slices"
	"sort"
	"time"
)

// Report is what a run did and found.
type Report struct {
	Seed     uint64
	Store    string
	Duration time.Duration
	// Dir holds the processes' logs; kept when the run failed.
	Dir string
	// Network says how network faults were made.
	Network string
	// Schedule is the planned faults; Injected the ones that ran (the run's
	// time may end before the last planned ones).
	Schedule []Fault
	Injected []injected
	// Commands by outcome (acked, refused, unknown).
	Commands map[string]int
	Events   int
	// What the log holds.
	Carts, Orders, Customers, Confirmed, Rejected int
	// Latency of acknowledged commands (retries included), in all and for
	// those sent while a fault was active or not yet recovered from.
	P50, P99, P99DuringFaults time.Duration
	DuringFaults              int
	Invariants                []Invariant

	ops []op
}

// Invariant is one property checked, how many things it was checked on and
// what violated it.
type Invariant struct {
	Name       string
	Checked    int
	Violations []string
}

func (r *Report) add(name string, checked int, violations []string) {
	r.Invariants = append(r.Invariants, Invariant{Name: name, Checked: checked, Violations: violations})
}

// Failed reports whether an invariant was violated.
func (r *Report) Failed() bool {
	for _, inv := range r.Invariants {
		if len(inv.Violations) > 0 {
			return true
		}
	}
	return false
}

// summarize computes the counts and latencies from the recorded commands.
func (r *Report) summarize() {
	r.Commands = map[string]int{}
	var all, during []time.Duration
	for _, o := range r.ops {
		r.Commands[o.Outcome]++
		if o.Outcome != outcomeAcked {
			continue
		}
		all = append(all, o.Latency)
		for _, in := range r.Injected {
			if !o.Start.Before(in.Start) && o.Start.Before(in.Healed.Add(in.Recovered)) {
				during = append(during, o.Latency)
				break
			}
		}
	}
	r.P50, r.P99 = quantile(all, 0.5), quantile(all, 0.99)
	r.P99DuringFaults, r.DuringFaults = quantile(during, 0.99), len(during)
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// Print writes the report.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "\nchaos report — seed %d, %s store, %s of workload\n", r.Seed, r.Store, r.Duration)
	fmt.Fprintf(w, "network faults: %s\n", r.Network)
	kinds := map[string]int{}
	for _, in := range r.Injected {
		kinds[in.Kind]++
	}
	fmt.Fprintf(w, "\nfaults injected: %d of %d planned (", len(r.Injected), len(r.Schedule))
	for i, k := range slices.Sorted(maps.Keys(kinds)) {
		if i > 0 {
			fmt.Fprint(w, ", ")
		}
		fmt.Fprintf(w, "%s %d", k, kinds[k])
	}
	fmt.Fprintln(w, ")")
	fmt.Fprintf(w, "  %-8s %-11s %-22s %8s %s\n", "at", "kind", "target", "for", "recovered in")
	var first time.Time
	if len(r.Injected) > 0 {
		first = r.Injected[0].Start.Add(-r.Injected[0].At)
	}
	for _, in := range r.Injected {
		rec := in.Recovered.Round(time.Millisecond).String()
		if in.RecoveryErr != "" {
			rec = "NOT: " + in.RecoveryErr
		}
		fmt.Fprintf(w, "  %6.1fs  %-11s %-22s %7.1fs %s\n", in.Start.Sub(first).Seconds(), in.Kind, in.Target, in.Healed.Sub(in.Start).Seconds(), rec)
	}
	fmt.Fprintf(w, "\ncommands: %d acknowledged, %d refused by a rule, %d unanswered within the retry bound\n",
		r.Commands[outcomeAcked], r.Commands[outcomeRefused], r.Commands[outcomeUnknown])
	fmt.Fprintf(w, "log: %d events; %d carts, %d orders (%d confirmed, %d rejected), %d customers\n",
		r.Events, r.Carts, r.Orders, r.Confirmed, r.Rejected, r.Customers)
	fmt.Fprintf(w, "latency of acknowledged commands (retries included): p50 %s, p99 %s; p99 during faults %s (%d commands)\n",
		r.P50.Round(time.Microsecond*100), r.P99.Round(time.Millisecond), r.P99DuringFaults.Round(time.Millisecond), r.DuringFaults)
	fmt.Fprintln(w, "\ninvariants:")
	for _, inv := range r.Invariants {
		mark := "ok  "
		if len(inv.Violations) > 0 {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s %s (%d checked)\n", mark, inv.Name, inv.Checked)
		for i, v := range inv.Violations {
			if i == 20 {
				fmt.Fprintf(w, "       ... and %d more\n", len(inv.Violations)-20)
				break
			}
			fmt.Fprintf(w, "       %s\n", v)
		}
	}
	if r.Failed() {
		fmt.Fprintf(w, "\nFAILED; the processes' logs are in %s; repeat the schedule with --seed %d\n", r.Dir, r.Seed)
	} else {
		fmt.Fprintln(w, "\nPASSED")
	}
}

// compareTop compares the served leaderboard with the units the log
// implies, and checks its order.
func compareTop(what string, body []byte, want map[string]int) []string {
	var top struct {
		Products []struct {
			ProductID string `json:"product_id"`
			Units     int    `json:"units"`
		} `json:"products"`
	}
	if err := json.Unmarshal(body, &top); err != nil {
		return []string{fmt.Sprintf("%s: %v: %.200s", what, err, body)}
	}
	var out []string
	got := map[string]int{}
	for i, p := range top.Products {
		got[p.ProductID] = p.Units
		if i > 0 {
			prev := top.Products[i-1]
			if p.Units > prev.Units || (p.Units == prev.Units && p.ProductID > prev.ProductID) {
				out = append(out, fmt.Sprintf("%s: %s (%d) after %s (%d): not in order", what, p.ProductID, p.Units, prev.ProductID, prev.Units))
			}
		}
	}
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	var ks []string
	for k := range keys {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		if got[k] != want[k] {
			out = append(out, fmt.Sprintf("%s: product %s has %d units, the log says %d", what, k, got[k], want[k]))
		}
	}
	return out
}

func mapKeys[V any](m map[string]V) iter.Seq[string] { return maps.Keys(m) }

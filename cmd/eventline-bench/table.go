package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// Row is one line of the table.
type Row struct {
	// Group is "ceiling", "write", "read" or "rebuild"; ID a stable short name
	// for the row (tests and tools look rows up by it).
	Group string `json:"group"`
	ID    string `json:"id"`
	// What says in words what was measured.
	What string `json:"what"`
	// Value in Unit (events/s, cmds/s, req/s, ms).
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// P50 and P99 are per-operation latencies in milliseconds, when measured.
	P50 float64 `json:"p50_ms,omitempty"`
	P99 float64 `json:"p99_ms,omitempty"`
	// Ceiling is the ID of the ceiling row the value is compared with, and
	// Ratio is Value / that ceiling's value.
	Ceiling string  `json:"ceiling,omitempty"`
	Ratio   float64 `json:"ratio,omitempty"`
	// Correct is "yes" or "NO" where the row's result could be checked, "" where
	// nothing applies.
	Correct string `json:"correct,omitempty"`
	// Note adds what does not fit a column (peak RSS, errors, sizes).
	Note string `json:"note,omitempty"`
}

// Report is the whole run.
type Report struct {
	Mode      string        `json:"mode"`
	Generator string        `json:"load_generator"`
	Redis     string        `json:"redis"`
	Started   time.Time     `json:"started"`
	Duration  time.Duration `json:"duration_ns"`
	LoadStart string        `json:"loadavg_at_start"`
	LoadAvg   string        `json:"loadavg_at_end"`
	Rows      []Row         `json:"rows"`
	Phases    []PhaseStat   `json:"phases"`
}

// PhaseStat is the wall time of one phase and the CPU time this process and
// the private redis-server used during it: a phase whose CPU is far below 2
// cores × wall waits on something (a round trip, the single writer) rather
// than computes.
type PhaseStat struct {
	Name     string        `json:"name"`
	Wall     time.Duration `json:"wall_ns"`
	SelfCPU  time.Duration `json:"self_cpu_ns"`
	RedisCPU time.Duration `json:"redis_cpu_ns"` // -1: not known
	LoadAvg  string        `json:"loadavg_at_end"`
}

// row returns the row with id, or nil.
func (r *Report) row(id string) *Row {
	for i := range r.Rows {
		if r.Rows[i].ID == id {
			return &r.Rows[i]
		}
	}
	return nil
}

// add appends row, computing its ratio against its ceiling if that was
// measured.
func (r *Report) add(row Row) {
	if c := r.row(row.Ceiling); c != nil && c.Value > 0 && row.Value > 0 {
		row.Ratio = row.Value / c.Value
	}
	r.Rows = append(r.Rows, row)
}

func (r *Report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// writeText prints the table, aligned, in plain text.
func (r *Report) writeText(w io.Writer) error {
	fmt.Fprintf(w, "eventline-bench, %s mode; redis: %s; load generator: %s\n", r.Mode, r.Redis, r.Generator)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "group\twhat\tresult\tp50 / p99\tceiling (same run)\tratio\tcorrect\tnote")
	group := ""
	for _, row := range r.Rows {
		g := row.Group
		if g == group {
			g = ""
		}
		group = row.Group
		lat := ""
		if row.P50 > 0 || row.P99 > 0 {
			lat = fmt.Sprintf("%s / %s ms", num(row.P50), num(row.P99))
		}
		ceiling, ratio := "", ""
		if c := r.row(row.Ceiling); c != nil {
			ceiling = fmt.Sprintf("%s %s", num(c.Value), c.Unit)
			if row.Ratio > 0 {
				ratio = fmt.Sprintf("%.2f", row.Ratio)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%s\t%s\t%s\n", g, row.What, num(row.Value), row.Unit,
			lat, ceiling, ratio, row.Correct, row.Note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "phase\twall\tCPU of this process\tCPU of redis-server\tload average after")
	for _, p := range r.Phases {
		redisCPU := "?"
		if p.RedisCPU >= 0 {
			redisCPU = fmt.Sprintf("%.2f s (%.2f cores)", p.RedisCPU.Seconds(), p.RedisCPU.Seconds()/p.Wall.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%.2f s\t%.2f s (%.2f cores)\t%s\t%s\n", p.Name, p.Wall.Seconds(),
			p.SelfCPU.Seconds(), p.SelfCPU.Seconds()/p.Wall.Seconds(), redisCPU, p.LoadAvg)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "took %s; load average (1, 5, 15 min) at the start: %s, at the end: %s\n",
		r.Duration.Round(100*time.Millisecond), r.LoadStart, r.LoadAvg)
	return err
}

// num formats a figure with three significant digits and thousands
// separators, the way the docs write them.
func num(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(math.Round(v)) >= 1000:
		return thousands(int64(math.Round(v)))
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	case math.Abs(v) >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

func thousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/internal/redistest"
)

// wantRows is every row the table must have, in order.
var wantRows = []string{
	"sqlite-tx100", "sqlite-tx100-full", "fsync", "redis-hset", "redis-rtt", "http-1", "http-64", "http-post-1", "http-post-64",
	"append-1", "append-64", "cmd-http-1", "cmd-http-64", "cmd-lib-1", "cmd-lib-1-normal", "cmd-lib-64", "cmd-lib-64-normal",
	"catchup-sample", "query", "query-after", "catchup-synthetic", "lag-1000", "lag-5000",
	"rebuild-carts", "rebuild-customers", "rebuild-products", "rebuild-orders", "rebuild",
}

// rowsWithCeiling must name a ceiling that the same run measured.
var rowsWithCeiling = []string{"append-1", "append-64", "cmd-http-1", "cmd-http-64", "cmd-lib-1", "cmd-lib-1-normal", "cmd-lib-64", "cmd-lib-64-normal",
	"catchup-sample", "query", "query-after",
	"rebuild-carts", "rebuild-customers", "rebuild-products", "rebuild-orders", "catchup-synthetic", "rebuild"}

// TestTinyRun runs the whole benchmark at its smallest sizes and checks the
// report's shape and correctness column, never its figures: on a loaded
// machine a timed loop may complete nothing, and a figure of zero is then
// the right report.
func TestTinyRun(t *testing.T) {
	srv := redistest.Start(t)
	// A bound, not a timing: the tiny run takes seconds on an idle machine.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := runMain(ctx, []string{"--tiny", "--json", "--redis-url", srv.URL}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("JSON output: %v\n%s", err, out.String())
	}
	if rep.Mode != "tiny" || rep.Generator == "" || rep.Duration <= 0 {
		t.Errorf("report header: mode %q, generator %q, duration %v", rep.Mode, rep.Generator, rep.Duration)
	}
	var ids []string
	for _, row := range rep.Rows {
		ids = append(ids, row.ID)
	}
	if strings.Join(ids, " ") != strings.Join(wantRows, " ") {
		t.Errorf("rows\n%v\nwant\n%v", ids, wantRows)
	}
	// Each library row on the default (FULL) store says what it is worth
	// against the same workload on NORMAL in the same run.
	for _, id := range []string{"cmd-lib-1", "cmd-lib-64"} {
		if row := rep.row(id); row != nil && !strings.Contains(row.Note, "of NORMAL") {
			t.Errorf("row %s: note %q does not compare it with NORMAL", id, row.Note)
		}
	}
	checkRows(t, &rep)

	// The text table has a line per row with its result and verdict.
	var text bytes.Buffer
	if err := rep.writeText(&text); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(text.String(), "\n")
	for _, row := range rep.Rows {
		found := false
		for _, l := range lines {
			if strings.Contains(l, row.What) && strings.Contains(l, row.Unit) && (row.Correct == "" || strings.Contains(l, row.Correct)) {
				found = true
			}
		}
		if !found {
			t.Errorf("text table has no line for %s:\n%s", row.ID, text.String())
		}
	}
	if !strings.Contains(text.String(), generatorName) {
		t.Errorf("text table does not name the load generator:\n%s", text.String())
	}

	// The benchmark cleans up after itself only as far as its own keys; what
	// it leaves is the read models, which is fine for a private server, and it
	// refuses to run again on a database that is not empty.
	err := runMain(ctx, []string{"--tiny", "--redis-url", srv.URL}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "empty database") {
		t.Errorf("second run on a used database: %v, want a refusal", err)
	}
}

// TestPrivateRedis starts and stops the command's own redis-server, the
// one a run without --redis-url uses.
func TestPrivateRedis(t *testing.T) {
	ctx := context.Background()
	srv, err := startRedis(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("ping the private server: %v", err)
	}
	srv.stop()
	select {
	case <-srv.done:
	default:
		t.Fatal("redis-server still running after stop")
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Error("ping answered after stop")
	}
}

func TestFlags(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{{"--profile-phase", "nope"}, {"extra"}, {"--carts", "x"}} {
		if err := runMain(ctx, args, io.Discard, io.Discard); err == nil {
			t.Errorf("runMain(%q): no error", args)
		}
	}
}

// checkRows checks what every row of rep must satisfy whatever the load:
// a figure that is a number, zero or more (a timed loop may complete nothing
// on a busy machine); a correct result; a ceiling of the same run and a ratio
// that is the row's figure over the ceiling's, absent when either is zero.
func checkRows(t *testing.T, rep *Report) {
	t.Helper()
	for _, id := range rowsWithCeiling {
		if row := rep.row(id); row != nil && row.Ceiling == "" {
			t.Errorf("row %s names no ceiling", id)
		}
	}
	for _, row := range rep.Rows {
		if math.IsNaN(row.Value) || math.IsInf(row.Value, 0) || row.Value < 0 {
			t.Errorf("row %s: value %v, want a figure (zero or more)", row.ID, row.Value)
		}
		if row.Group != "ceiling" && row.Correct != "yes" {
			t.Errorf("row %s: correct %q (%s), want yes", row.ID, row.Correct, row.Note)
		}
	}
	for _, row := range rep.Rows {
		if row.Ceiling == "" {
			continue
		}
		id := row.ID
		c := rep.row(row.Ceiling)
		if c == nil || c.Group != "ceiling" {
			t.Errorf("row %s: ceiling %q, want a ceiling row of the same run", id, row.Ceiling)
			continue
		}
		// The ratio is the row's figure over its ceiling's, and absent
		// when either is zero (nothing measured under load).
		want := 0.0
		if row.Value > 0 && c.Value > 0 {
			want = row.Value / c.Value
		}
		if row.Ratio != want {
			t.Errorf("row %s: ratio %v, want %v / %v = %v", id, row.Ratio, row.Value, c.Value, want)
		}
	}
}

// TestReportOfNothingMeasured is the report of a run on a machine so busy
// that the timed loops completed nothing: zero figures are reported as they
// are, without a ratio, and the report is still written and still passes the
// checks of TestTinyRun.
func TestReportOfNothingMeasured(t *testing.T) {
	rep := &Report{Mode: "tiny", Generator: generatorName, Duration: time.Second}
	rep.add(Row{Group: "ceiling", ID: "http-64", What: "trivial handler", Value: 0, Unit: "req/s"})
	rep.add(Row{Group: "ceiling", ID: "sqlite-tx100", What: "raw inserts", Value: 2000, Unit: "rows/s"})
	rep.add(Row{Group: "read", ID: "query", What: "query API", Value: 0, Unit: "req/s", Ceiling: "http-64", Correct: "yes"})
	rep.add(Row{Group: "read", ID: "query-after", What: "query API after", Value: 12, Unit: "req/s", Ceiling: "http-64", Correct: "yes"})
	rep.add(Row{Group: "write", ID: "append-1", What: "appends", Value: 0, Unit: "events/s", Ceiling: "sqlite-tx100", Correct: "yes"})
	rep.add(Row{Group: "write", ID: "append-64", What: "appends 64", Value: 500, Unit: "events/s", Ceiling: "sqlite-tx100", Correct: "yes"})
	checkRows(t, rep)
	if r := rep.row("append-64"); r.Ratio != 0.25 {
		t.Errorf("append-64 ratio %v, want 500/2000", r.Ratio)
	}
	var js, text bytes.Buffer
	if err := rep.writeJSON(&js); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	if err := rep.writeText(&text); err != nil {
		t.Fatalf("text: %v", err)
	}
	for _, row := range rep.Rows {
		if !strings.Contains(text.String(), row.What) {
			t.Errorf("text table has no line for %s:\n%s", row.ID, text.String())
		}
	}
}

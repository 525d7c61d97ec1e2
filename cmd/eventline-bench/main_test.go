package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/internal/redistest"
)

// wantRows is every row the table must have, in order.
var wantRows = []string{
	"sqlite-tx100", "sqlite-tx100-full", "fsync", "redis-hset", "redis-rtt", "http-1", "http-64",
	"append-1", "append-64", "cmd-http-1", "cmd-http-64", "cmd-lib-1", "cmd-lib-1-normal", "cmd-lib-64", "cmd-lib-64-normal",
	"catchup-sample", "query", "query-after", "catchup-synthetic", "lag-1000", "lag-5000",
	"rebuild-carts", "rebuild-customers", "rebuild-products", "rebuild-orders", "rebuild",
}

// rowsWithCeiling must name a ceiling that the same run measured.
var rowsWithCeiling = []string{"append-1", "append-64", "cmd-http-1", "cmd-http-64", "cmd-lib-1", "cmd-lib-1-normal", "cmd-lib-64", "cmd-lib-64-normal",
	"catchup-sample", "query", "query-after",
	"rebuild-carts", "rebuild-customers", "rebuild-products", "rebuild-orders", "catchup-synthetic", "rebuild"}

// TestTinyRun runs the whole benchmark at its smallest sizes and checks the
// report's shape and correctness column, never its timings.
func TestTinyRun(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
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
		if row.Value <= 0 {
			t.Errorf("row %s: value %v, want a measured figure", row.ID, row.Value)
		}
		if row.Group != "ceiling" && row.Correct != "yes" {
			t.Errorf("row %s: correct %q (%s), want yes", row.ID, row.Correct, row.Note)
		}
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
	for _, id := range rowsWithCeiling {
		row := rep.row(id)
		if row == nil {
			continue // reported above
		}
		c := rep.row(row.Ceiling)
		if c == nil || c.Group != "ceiling" || row.Ratio <= 0 {
			t.Errorf("row %s: ceiling %q, ratio %v, want a ceiling row of the same run and a ratio", id, row.Ceiling, row.Ratio)
		}
	}

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

package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/query"
)

// statusRows runs status --json and returns its rows as "name vVgG".
func statusRows(t *testing.T, e *env) []string {
	t.Helper()
	js, _, err := run(context.Background(), e.config(counter("carts", 1)), "status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []projection.Status
	if err := json.Unmarshal([]byte(js), &rows); err != nil {
		t.Fatalf("status --json: %v\n%s", err, js)
	}
	var out []string
	for _, s := range rows {
		out = append(out, fmt.Sprintf("%s v%dg%d %s", s.Name, s.Version, s.Generation, s.State))
	}
	return out
}

// TestStatusListsNoPhantomBuilds: after a forced rebuild made generation 1
// active, a projector that failed at start-up (its runners stopped before
// taking a lease) and a build a crashed runner left with nothing in it do not
// show as stopped builds with full lag: the only row is the live build.
func TestStatusListsNoPhantomBuilds(t *testing.T) {
	e := newEnv(t, 1_000)
	ctx := context.Background()
	e.buildV1(t, "carts")
	if _, _, err := run(ctx, e.config(counter("carts", 1)), "replay", "--force", "--progress", "none", "carts"); err != nil {
		t.Fatal(err)
	}
	if rows := statusRows(t, e); len(rows) != 1 || rows[0] != "carts v1g1 stopped" {
		t.Fatalf("status after the forced rebuild: %q, want only carts v1g1", rows)
	}

	// A projector fails at start-up: its runner's context ends at once.
	r, err := projection.NewRunner(projection.Config{Store: e.store, Redis: e.rdb, Projection: counter("carts", 1),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := r.Run(cctx); err != nil {
		t.Fatal(err)
	}
	// A runner crashed before its first batch of generation 2 of a rebuild.
	e.rdb.SAdd(ctx, projection.VersionsKey("carts"), "1g2")
	e.rdb.HSet(ctx, query.Prefix("carts", query.Build{Version: 1, Generation: 2})+"status", "state", "catching_up", "holder", "crashed")

	if rows := statusRows(t, e); len(rows) != 1 || rows[0] != "carts v1g1 stopped" {
		t.Fatalf("status: %q, want only carts v1g1", rows)
	}
}

// TestStatusWarnsOfAnEvictingPolicy: status warns when Redis may evict
// keys, and says nothing when its policy is noeviction.
func TestStatusWarnsOfAnEvictingPolicy(t *testing.T) {
	e := newEnv(t, 100)
	ctx := context.Background()
	e.buildV1(t, "carts")
	for _, tc := range []struct{ policy, want string }{
		{"allkeys-lru", "warning: projection: redis may evict read model keys: maxmemory-policy is allkeys-lru"},
		{"volatile-ttl", "maxmemory-policy is volatile-ttl"},
		{"noeviction", ""},
	} {
		if err := e.rdb.ConfigSet(ctx, "maxmemory-policy", tc.policy).Err(); err != nil {
			t.Fatalf("CONFIG SET maxmemory-policy %s: %v", tc.policy, err)
		}
		out, stderr, err := run(ctx, e.config(counter("carts", 1)), "status")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "carts") {
			t.Errorf("%s: no row for carts:\n%s", tc.policy, out)
		}
		switch {
		case tc.want == "" && stderr != "":
			t.Errorf("%s: unexpected warning %q", tc.policy, stderr)
		case tc.want != "" && (!strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "noeviction")):
			t.Errorf("%s: stderr %q, want a warning containing %q and naming noeviction", tc.policy, stderr, tc.want)
		}
	}
}

// TestStatusShowsPartitions: the status of a partitioned projection has a
// row for the build (the total) and one per partition with its checkpoint
// and holder.
func TestStatusShowsPartitions(t *testing.T) {
	e := newEnv(t, 1_000)
	ctx := context.Background()
	p := projection.Partitioned(counter("parts", 1), 3, nil)
	e.startProjector(t, p, "holder-1", 0, 30*time.Second)
	head, _ := e.store.Head(ctx)
	out, _, err := run(ctx, e.config(p), "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"parts ", "  p0/3", "  p1/3", "  p2/3", "holder-1"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status lacks %q:\n%s", want, out)
		}
	}
	t.Logf("status:\n%s", out)
	if got := strings.Count(out, head.String()); got < 4 {
		t.Fatalf("status shows the head as checkpoint %d times, want the total and 3 partitions:\n%s", got, out)
	}
}

package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/pgtest"
	"github.com/eventline/eventline/query"
	"github.com/eventline/eventline/sample/readmodel/schema"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// cartBinary builds the cart binary into a temporary directory.
func cartBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cart")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/cart").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// A short run of the whole harness on PostgreSQL passes: the system keeps
// its invariants under the seed's faults. Afterwards one cart's quantity is
// changed behind the projections' back in Redis, and the checker must find
// exactly that difference on both query APIs.
func TestShortRun(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("EVENTLINE_REQUIRE_REDIS_SERVER") != "" {
			t.Fatal("no redis-server on PATH and EVENTLINE_REQUIRE_REDIS_SERVER is set")
		}
		t.Skip("no redis-server on PATH: the harness runs a real one")
	}
	server := pgtest.ServerURL(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	var out bytes.Buffer
	var corrupted string
	var caught []string
	cfg := Config{
		CartBinary: cartBinary(t), Dir: t.TempDir(), PostgresURL: server,
		Seed: 27, Duration: 20 * time.Second, Gap: 2 * time.Second, Workers: 4, Out: &out,
		afterVerify: func(ctx context.Context, top *topology, w *world) {
			rdb := redis.NewClient(&redis.Options{Addr: top.redis.addr})
			defer rdb.Close()
			for _, id := range slices.Sorted(mapKeys(w.carts)) {
				c := w.carts[id]
				if len(c.Items) == 0 {
					continue
				}
				active, err := rdb.Get(ctx, query.ActiveKey(schema.Carts)).Result()
				if err != nil {
					t.Errorf("active build of carts: %v", err)
					return
				}
				key := query.Tag(schema.Carts) + ":v" + active + ":" + schema.PartCart + ":" + id
				if err := rdb.HIncrBy(ctx, key, schema.PrefixQuantity+c.Items[0].ProductID, 1).Err(); err != nil {
					t.Errorf("corrupting %s: %v", key, err)
					return
				}
				corrupted = id
				break
			}
			_, caught = checkModels(ctx, top.queries, w, time.Now().Add(time.Minute))
		},
	}
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	rep.Print(&out)
	t.Log(out.String())
	if rep.Failed() {
		t.Fatalf("invariants violated (logs in %s)", cfg.Dir)
	}
	if len(rep.Injected) < 2 || rep.Commands[outcomeAcked] < 100 || rep.Orders == 0 {
		t.Fatalf("the run did too little to mean anything: %d faults, %d commands acknowledged, %d orders",
			len(rep.Injected), rep.Commands[outcomeAcked], rep.Orders)
	}
	if corrupted == "" {
		t.Fatal("no cart with items to corrupt")
	}
	// One quantity more: the items and the total differ, on both query APIs.
	if len(caught) != 4 {
		t.Fatalf("after corrupting cart %s the checker found %d differences, want items and total on each query API: %q", corrupted, len(caught), caught)
	}
	for i, v := range caught {
		field := []string{"items is", "total_cents is"}[i%2]
		if !strings.Contains(v, "/carts/"+corrupted+":") || !strings.Contains(v, field) {
			t.Errorf("difference %q does not name cart %s's %s", v, corrupted, field)
		}
	}
}

// rec makes a record of the log for the checker's unit tests.
func rec(pos uint64, stream string, version uint64, typ, data, key string) eventstore.Record {
	r := eventstore.Record{StreamID: stream, Version: version, Position: eventstore.Position{Commit: pos, Prepare: pos},
		RecordedAt: time.Unix(1700000000, int64(pos)*1000).UTC()}
	r.ID, r.Type, r.Data = uuid.New(), typ, []byte(data)
	if key != "" {
		r.Metadata.Headers = map[string]string{headerCommandID: key}
	}
	return r
}

// sampleLog is a small log: a registered customer, a cart with two items,
// checked out and confirmed.
func sampleLog() []eventstore.Record {
	return []eventstore.Record{
		rec(1, "customer-ann", 1, "customer.registered", `{"credit_limit_cents":10000}`, "k-reg"),
		rec(2, "cart-c1", 1, "cart.opened", `{"customer_id":"ann"}`, "k-open"),
		rec(3, "cart-c1", 2, "cart.item_added", `{"product_id":"tea","quantity":2,"unit_price_cents":450}`, "k-add1"),
		rec(4, "cart-c1", 3, "cart.item_added", `{"product_id":"milk","quantity":1,"unit_price_cents":100}`, "k-add2"),
		rec(5, "cart-c1", 4, "cart.checked_out", `{"order_id":"o1","customer_id":"ann","items":[{"product_id":"tea","quantity":2,"unit_price_cents":450},{"product_id":"milk","quantity":1,"unit_price_cents":100}],"total_cents":1000}`, "k-co"),
		rec(6, "order-o1", 1, "order.placed", `{"order_id":"o1","cart_id":"c1","customer_id":"ann","items":[],"total_cents":1000}`, "ev5/place"),
		rec(7, "customer-ann", 2, "customer.credit_reserved", `{"order_id":"o1","amount_cents":1000}`, "ev6/reserve"),
		rec(8, "order-o1", 2, "order.confirmed", `{}`, "ev7/confirm"),
	}
}

func acked(key string, pos uint64) op {
	return op{Key: key, Outcome: outcomeAcked, Status: 200, Recorded: true,
		Position: eventstore.Position{Commit: pos, Prepare: pos}.String()}
}

func sampleOps() []op {
	return []op{acked("k-reg", 1), acked("k-open", 2), acked("k-add1", 3), acked("k-add2", 4), acked("k-co", 5)}
}

// The checker passes a consistent log, and reports a doubled command, an
// acknowledged command missing from the log, one at another position than
// acknowledged, and a refused command that was written.
func TestCheckExactlyOnce(t *testing.T) {
	log, ops := sampleLog(), sampleOps()
	if v := checkExactlyOnce(log, ops); len(v) != 0 {
		t.Fatalf("consistent log: %q", v)
	}
	doubled := append(slices.Clone(log), rec(9, "cart-c1", 5, "cart.item_added", `{"product_id":"tea","quantity":2,"unit_price_cents":450}`, "k-add1"))
	if v := checkExactlyOnce(doubled, ops); len(v) != 1 || !strings.Contains(v[0], "k-add1 is in the log 2 times") {
		t.Errorf("doubled command: %q", v)
	}
	missing := append(slices.Clone(ops), acked("k-lost", 42))
	if v := checkExactlyOnce(log, missing); len(v) != 1 || !strings.Contains(v[0], "k-lost") || !strings.Contains(v[0], "not in the log") {
		t.Errorf("lost command: %q", v)
	}
	moved := slices.Clone(ops)
	moved[2] = acked("k-add1", 4)
	if v := checkExactlyOnce(log, moved); len(v) != 1 || !strings.Contains(v[0], "k-add1") {
		t.Errorf("wrong position: %q", v)
	}
	refused := append(slices.Clone(ops[:2]), op{Key: "k-add1", Outcome: outcomeRefused, Status: 422})
	if v := checkExactlyOnce(log[:4], refused); len(v) != 1 || !strings.Contains(v[0], "answered 422 without writing") {
		t.Errorf("refused but written: %q", v)
	}
}

// The fold gives the documents of docs/sample-read-models.md, and the
// comparison reports a wrong value and an extra field.
func TestFoldAndCompare(t *testing.T) {
	w := fold(sampleLog())
	if len(w.problems) != 0 {
		t.Fatal(w.problems)
	}
	served := `{"cart_id":"c1","customer_id":"ann","status":"checked_out","items":[{"product_id":"tea","quantity":2,"unit_price_cents":450},{"product_id":"milk","quantity":1,"unit_price_cents":100}],"total_cents":1000,"version":4,"order_id":"o1"}`
	if v := compareJSON("cart c1", []byte(served), w.carts["c1"]); len(v) != 0 {
		t.Fatalf("right document: %q", v)
	}
	wrong := strings.Replace(served, `"quantity":2`, `"quantity":3`, 1)
	if v := compareJSON("cart c1", []byte(wrong), w.carts["c1"]); len(v) != 1 || !strings.Contains(v[0], "items") {
		t.Errorf("wrong quantity: %q", v)
	}
	extra := strings.Replace(served, `"version":4`, `"version":4,"note":"x"`, 1)
	if v := compareJSON("cart c1", []byte(extra), w.carts["c1"]); len(v) != 1 || !strings.Contains(v[0], "note") {
		t.Errorf("extra field: %q", v)
	}
	order := fmt.Sprintf(`{"order_id":"o1","cart_id":"c1","customer_id":"ann","status":"confirmed","items":[{"product_id":"tea","quantity":2,"unit_price_cents":450},{"product_id":"milk","quantity":1,"unit_price_cents":100}],"total_cents":1000,"placed_at":%q}`,
		time.Unix(1700000000, 5000).UTC().Format(time.RFC3339Nano))
	if v := compareJSON("order o1", []byte(order), w.orders["o1"]); len(v) != 0 {
		t.Errorf("right order: %q", v)
	}
	cu, _ := json.Marshal(w.customers["ann"])
	if want := `{"customer_id":"ann","carts":["c1"],"orders":["o1"],"registered":true,"credit_limit_cents":10000,"reserved_cents":1000}`; string(cu) != want {
		t.Errorf("customer ann:\n got %s\nwant %s", cu, want)
	}
	if v := compareTop("top", []byte(`{"products":[{"product_id":"tea","units":2},{"product_id":"milk","units":1}]}`), w.units()); len(v) != 0 {
		t.Errorf("right leaderboard: %q", v)
	}
	if v := compareTop("top", []byte(`{"products":[{"product_id":"tea","units":3},{"product_id":"milk","units":1}]}`), w.units()); len(v) != 1 {
		t.Errorf("wrong units: %q", v)
	}
}

// An order left pending, or confirmed without its credit, is reported.
func TestCheckOrders(t *testing.T) {
	log := sampleLog()
	if v := checkOrders(fold(log)); len(v) != 0 {
		t.Fatalf("consistent log: %q", v)
	}
	noCredit := slices.Delete(slices.Clone(log), 6, 7)
	if v := checkOrders(fold(noCredit)); len(v) != 1 || !strings.Contains(v[0], "0 reserved") {
		t.Errorf("confirmed without credit: %q", v)
	}
	if v := checkOrders(fold(log[:6])); len(v) != 1 || !strings.Contains(v[0], "still pending") {
		t.Errorf("pending order: %q", v)
	}
	rejected := append(slices.Clone(log[:6]), rec(7, "order-o1", 2, "order.rejected", `{"reason":"no"}`, "x/reject"))
	if v := checkOrders(fold(rejected)); len(v) != 1 || !strings.Contains(v[0], "never reopened") {
		t.Errorf("rejected, cart not reopened: %q", v)
	}
}

// A batch announced after a later one of the same build — what a runner
// that lost its lease would write — is reported; a reset (Redis restarted
// empty) starts over.
func TestCommitTrace(t *testing.T) {
	c := newCommitTrace()
	p := func(n uint64) string { return eventstore.Position{Commit: n, Prepare: n}.String() }
	c.observe("{el:carts}:commits", "2 "+p(5))
	c.observe("{el:carts}:commits", "2 "+p(9))
	c.observe("{el:orders}:commits", "2 "+p(3))
	// A switch to the build announces the last batch's position again.
	c.observe("{el:carts}:commits", "2 "+p(9)+" switched")
	if len(c.violations) != 0 {
		t.Fatal(c.violations)
	}
	c.observe("{el:carts}:commits", "2 "+p(7))
	if len(c.violations) != 1 || !strings.Contains(c.violations[0], "carts") {
		t.Fatalf("stale batch: %q", c.violations)
	}
	c.reset()
	c.observe("{el:carts}:commits", "2 "+p(1))
	c.observe("{el:carts}:commits", "garbage")
	if len(c.violations) != 2 {
		t.Fatalf("after a reset: %q", c.violations)
	}
}

// The same seed gives the same schedule; another seed another one.
func TestScheduleReproducible(t *testing.T) {
	roles := []string{"command-api-1", "projector-1", "saga-1"}
	links := []string{"projector-1→redis", "saga-1→redis"}
	a := Schedule(7, time.Minute, 3*time.Second, roles, links)
	b := Schedule(7, time.Minute, 3*time.Second, roles, links)
	c := Schedule(8, time.Minute, 3*time.Second, roles, links)
	if len(a) < 5 || fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("seed 7 twice:\n%v\n%v", a, b)
	}
	if fmt.Sprint(a) == fmt.Sprint(c) {
		t.Fatal("seeds 7 and 8 gave the same schedule")
	}
	for _, f := range a {
		if f.At >= 45*time.Second {
			t.Errorf("fault %s starts in the last quarter", f)
		}
		if f.Kind == FaultPause && f.For <= leaseTTL {
			t.Errorf("pause %s is not longer than the lease TTL", f)
		}
	}
}

package main_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/eventline/eventline/internal/redistest"
	qry "github.com/eventline/eventline/query"
	"github.com/eventline/eventline/sample/readmodel/schema"
)

// TestPartitionedCartsOnRedisCluster runs the split roles on a Redis Cluster
// of three masters with the carts model in four partitions
// (EVENTLINE_CARTS_PARTITIONS): one command API, two projectors sharing the
// partitions, two query APIs routing each cart to its partition. Both query
// APIs answer every cart exactly, a read with ?after= of a command's
// position sees that command, the carts' hashes sit on more than one
// master, and the status command shows the four partitions with a holder
// each.
func TestPartitionedCartsOnRedisCluster(t *testing.T) {
	const parts = 4
	rc := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3})
	env := []string{
		"EVENTLINE_STORE_URL=" + filepath.Join(t.TempDir(), "events.db"),
		"EVENTLINE_REDIS_URL=" + rc.URL,
		fmt.Sprintf("EVENTLINE_CARTS_PARTITIONS=%d", parts),
	}
	commands := start(t, "command-api", env...)
	start(t, "projector", env...)
	start(t, "projector", env...)
	q1 := start(t, "query-api", env...)
	q2 := start(t, "query-api", env...)

	rng := rand.New(rand.NewPCG(4, uint64(time.Now().UnixNano())))
	m := newModel()
	opens, rest := workload(rng, "cart", 30)
	run(t, commands.url, m, opens, 8, nil)
	run(t, commands.url, m, rest, 16, nil)
	m.check(t, q1.url)
	m.check(t, q2.url)

	// ?after= of one command's position waits for the cart's partition and
	// then shows the command.
	for i := range 6 {
		id := fmt.Sprintf("late%d", i)
		if r := send(t, "POST", commands.url+"/carts", fmt.Sprintf(`{"customer_id":"cust1","cart_id":%q}`, id)); r.status/100 != 2 {
			t.Fatalf("open %s: %d %s", id, r.status, r.body)
		}
		r := send(t, "POST", commands.url+"/carts/"+id+"/items", `{"product_id":"extra","quantity":1,"unit_price_cents":1}`)
		if r.status/100 != 2 {
			t.Fatalf("add to %s: %d %s", id, r.status, r.body)
		}
		var res struct {
			Position string `json:"position"`
		}
		if err := json.Unmarshal(r.body, &res); err != nil {
			t.Fatal(err)
		}
		for _, q := range []*proc{q1, q2} {
			got := query(t, q.url+"/carts/"+id+"?after="+res.Position)
			var c struct {
				Items []struct {
					ProductID string `json:"product_id"`
				} `json:"items"`
			}
			if got.status != 200 || json.Unmarshal(got.body, &c) != nil {
				t.Fatalf("GET /carts/%s?after=%s: %d %s", id, res.Position, got.status, got.body)
			}
			found := false
			for _, it := range c.Items {
				found = found || it.ProductID == "extra"
			}
			if !found {
				t.Fatalf("GET /carts/%s?after=%s does not show the item added at that position: %s", id, res.Position, got.body)
			}
		}
	}

	// The live build is the four-partition version, and the carts' hashes
	// are spread over the masters.
	rdb := rc.Client(t)
	v, err := qry.Resolve(t.Context(), rdb, schema.Carts)
	if err != nil {
		t.Fatal(err)
	}
	if v.Partitions != parts || v.Version != schema.CartsVersionFor(parts) {
		t.Fatalf("live carts build: version %d with %d partitions, want %d with %d", v.Version, v.Partitions, schema.CartsVersionFor(parts), parts)
	}
	masters := map[int]int{}
	for id := range m.carts {
		key := v.KeyFor(id, schema.PartCart, id)
		n, err := rdb.Exists(t.Context(), key).Result()
		if err != nil || n != 1 {
			t.Fatalf("cart %s: key %s: exists %d, %v", id, key, n, err)
		}
		masters[rc.MasterOf(key)]++
	}
	if len(masters) < 2 {
		t.Fatalf("the carts' hashes are all on one master: %v", masters)
	}
	t.Logf("carts per master: %v", masters)

	rows, out := statusJSON(t, env)
	found := false
	for _, r := range rows {
		if r.Name != schema.Carts || !r.Active {
			continue
		}
		found = true
		if r.Version != v.Version || len(r.Parts) != parts {
			t.Fatalf("status of the live carts build: version %d with %d partitions, want %d with %d:\n%s", r.Version, len(r.Parts), v.Version, parts, out)
		}
		for _, p := range r.Parts {
			if p.Holder == "" || p.Checkpoint.IsZero() {
				t.Errorf("status of carts partition %d: holder %q, checkpoint %s", p.Partition, p.Holder, p.Checkpoint)
			}
		}
	}
	if !found {
		t.Fatalf("status shows no active carts build:\n%s", out)
	}
}

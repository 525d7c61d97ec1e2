package queryapi_test

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/query"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/http/queryapi"
	"github.com/eventline/eventline/sample/readmodel/schema"
)

// With the carts model in four partitions, GET /carts/{id} reads each cart
// from its partition, ?after= of a command's position shows that command,
// the position answered is the cart's partition's checkpoint, and the
// cart's hash is in its partition's hash tag and nowhere else.
func TestPartitionedCarts(t *testing.T) {
	const parts = 4
	h := newHarness(t, redistest.Options{})
	h.cartsPartitions = parts
	h.startProjectors(projection.Config{})

	histories := map[string][]cart.Event{}
	versions := map[string]uint64{}
	last := map[string]eventstore.Position{}
	check := func(id string, pos eventstore.Position) {
		t.Helper()
		var got schema.Cart
		h.getJSON("/carts/"+id+after(pos), &got)
		if want := expectCart(id, cart.Decider.Fold(histories[id]...), versions[id]); !reflect.DeepEqual(got, want) {
			t.Fatalf("cart %s after %s:\n got %+v\nwant %+v", id, pos, got, want)
		}
	}
	var ids []string
	for i := range 12 {
		id := fmt.Sprintf("pc%d", i)
		ids = append(ids, id)
		res := h.cart(id, cart.Open{CustomerID: "alice"})
		histories[id], versions[id] = append(histories[id], res.Events...), res.Version
	}
	h.waitActive()
	for i, id := range ids {
		res := h.cart(id, cart.AddItem{ProductID: "apple", Quantity: 1 + i, UnitPriceCents: 100})
		histories[id], versions[id] = append(histories[id], res.Events...), res.Version
		last[id] = res.Position
		check(id, res.Position)
	}

	v, err := query.Resolve(h.ctx, h.rdb, schema.Carts)
	if err != nil {
		t.Fatal(err)
	}
	if v.Partitions != parts || v.Version != schema.CartsVersionFor(parts) {
		t.Fatalf("live carts build: v%d in %d partitions, want v%d in %d", v.Version, v.Partitions, schema.CartsVersionFor(parts), parts)
	}
	used := map[int]bool{}
	for _, id := range ids {
		p := v.PartitionOf(id)
		used[p.Index] = true
		key := v.KeyFor(id, schema.PartCart, id)
		if !strings.HasPrefix(key, query.PartitionTag(schema.Carts, p)) {
			t.Fatalf("cart %s: key %s is not in its partition's tag %s", id, key, query.PartitionTag(schema.Carts, p))
		}
		for q := range parts {
			other := query.PartitionKey(schema.Carts, v.Build(), query.Partition{Index: q, Count: parts}, schema.PartCart, id)
			n, err := h.rdb.Exists(h.ctx, other).Result()
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(0); q == p.Index {
				want = 1
				if n != want {
					t.Fatalf("cart %s: %s missing", id, other)
				}
			} else if n != want {
				t.Fatalf("cart %s: also written to partition %d (%s)", id, q, other)
			}
		}
		// The answer's position is the partition's checkpoint, read with
		// the cart: never behind the cart's last command, never ahead of the
		// partition's checkpoint read after it.
		res, err := http.Get(h.url + "/carts/" + id)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		got, err := eventstore.ParsePosition(res.Header.Get(queryapi.HeaderPosition))
		if res.StatusCode != 200 || err != nil {
			t.Fatalf("GET /carts/%s: %d, position %q: %v", id, res.StatusCode, res.Header.Get(queryapi.HeaderPosition), err)
		}
		cp, err := v.PartitionCheckpoint(h.ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if got.Before(last[id]) || cp.Before(got) {
			t.Fatalf("GET /carts/%s answered position %s; cart's last command at %s, partition %s checkpoint %s", id, got, last[id], p, cp)
		}
	}
	if len(used) < 2 {
		t.Fatalf("12 carts all in one partition: %v", used)
	}
	h.wantError("/carts/nosuchcart", 404, "not_found")
}

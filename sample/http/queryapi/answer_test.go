package queryapi

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/eventline/eventline/sample/readmodel/schema"
)

// The cart answer is appended by hand; it must be the document json.Marshal
// writes, whatever the cart holds.
func TestAppendCartIsMarshal(t *testing.T) {
	for _, c := range []schema.Cart{
		{},
		{CartID: "c1", Items: []schema.Line{}},
		{CartID: "c-2", CustomerID: "zoe", Status: schema.CartOpen, Version: 3, TotalCents: 4200,
			Items: []schema.Line{{ProductID: "p-1", Quantity: 2, UnitPriceCents: 1000}, {ProductID: "p-2", Quantity: 1, UnitPriceCents: 2200}}},
		{CartID: "c.3", CustomerID: "a<b>&\"c\"", Status: schema.CartCheckedOut, Version: 1<<64 - 1, TotalCents: -1,
			OrderID: "order\u2028\xff", Items: []schema.Line{{ProductID: "é\n", Quantity: -3, UnitPriceCents: 1 << 62}}},
	} {
		want, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendCart(nil, c); !bytes.Equal(got, want) {
			t.Errorf("appendCart(%+v)\n = %s\nwant %s", c, got, want)
		}
	}
}

// BenchmarkCartAnswer encodes the answer of GET /carts/{id} for a cart of six
// lines, as the hand-written appender does and as json.Marshal did.
func BenchmarkCartAnswer(b *testing.B) {
	c := schema.Cart{CartID: "0193f1c2-7d7e-7a3c-9a51-3f0c2b6d8e41", CustomerID: "customer-17", Status: schema.CartCheckedOut,
		Version: 7, TotalCents: 123450, OrderID: "0193f1c2-7d7e-7a3c-9a51-3f0c2b6d8e42"}
	for i := range 6 {
		c.Items = append(c.Items, schema.Line{ProductID: "product-" + string(rune('a'+i)), Quantity: i + 1, UnitPriceCents: 1999})
	}
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = appendCart(make([]byte, 0, 256+96*len(c.Items)), c)
		}
	})
	b.Run("marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(c); err != nil {
				b.Fatal(err)
			}
		}
	})
}

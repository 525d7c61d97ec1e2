package readmodel_test

import (
	"testing"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/readmodel"
	"github.com/eventline/eventline/sample/readmodel/schema"
)

// The carts model's partition key is the cart id, which readers have; other
// streams keep their stream id. Each partition count is a version of its
// own, increasing with the count.
func TestCartPartitionKey(t *testing.T) {
	for stream, want := range map[string]string{
		"cart-c1": "c1", "cart-": "cart-", "order-o1": "order-o1", "customer-x": "customer-x",
	} {
		if got := readmodel.CartPartitionKey(eventstore.Record{StreamID: stream}); got != want {
			t.Errorf("CartPartitionKey(%q) = %q, want %q", stream, got, want)
		}
	}
	reg := eventstore.NewRegistry()
	cart.RegisterEvents(reg)
	p := readmodel.PartitionedCartsProjection(reg, 4)
	pp, ok := p.(projection.Partitioner)
	if !ok || pp.Partitions() != 4 || pp.PartitionKey(eventstore.Record{StreamID: "cart-c9"}) != "c9" {
		t.Fatalf("PartitionedCartsProjection(4): partitioner %v", ok)
	}
	if _, ok := readmodel.PartitionedCartsProjection(reg, 1).(projection.Partitioner); ok {
		t.Fatal("PartitionedCartsProjection(1) is partitioned")
	}
	prev := 0
	for _, n := range []int{1, 2, 4, 16, readmodel.MaxCartsPartitions} {
		v := schema.CartsVersionFor(n)
		if v <= prev {
			t.Fatalf("CartsVersionFor(%d) = %d, not above %d", n, v, prev)
		}
		prev = v
	}
	// Version 2 unpartitioned keeps its number and keys; any later
	// CartsVersion follows the rule for every count.
	want := schema.CartsVersion*1000 + 1
	if schema.CartsVersion == 2 {
		want = 2
	}
	if schema.CartsVersionFor(1) != want || schema.CartsVersionFor(0) != want {
		t.Fatalf("CartsVersionFor(1) = %d, CartsVersionFor(0) = %d, want %d", schema.CartsVersionFor(1), schema.CartsVersionFor(0), want)
	}
}

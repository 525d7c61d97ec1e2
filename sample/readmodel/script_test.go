package readmodel

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/internal/redistest"
)

// TestReturnUnitsCannotFail runs the products script on the data it may meet
// besides a well-formed checkout: no checkout hash at all, and a value that
// is not a number. A failing script inside EXEC would not roll the batch
// back, so it must answer instead of failing.
func TestReturnUnitsCannotFail(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	units, checkout := "{el:products}:v2:units", "{el:products}:v2:checkout:c1"
	if err := rdb.ZAdd(ctx, units, redis.Z{Score: 5, Member: "tea"}, redis.Z{Score: 2, Member: "jam"}).Err(); err != nil {
		t.Fatal(err)
	}
	n, err := rdb.Eval(ctx, returnUnits, []string{units, checkout}).Int()
	if err != nil || n != 0 {
		t.Fatalf("no checkout: %d lines, %v; want 0, nil", n, err)
	}
	if err := rdb.HSet(ctx, checkout, "tea", 2, "jam", 2, "odd", "x").Err(); err != nil {
		t.Fatal(err)
	}
	if n, err = rdb.Eval(ctx, returnUnits, []string{units, checkout}).Int(); err != nil || n != 3 {
		t.Fatalf("checkout: %d lines, %v; want 3, nil", n, err)
	}
	zs, err := rdb.ZRangeWithScores(ctx, units, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(zs) != 1 || zs[0].Member != "tea" || zs[0].Score != 3 {
		t.Fatalf("board after the reopening: %+v, want tea 3 alone", zs)
	}
	if left, err := rdb.Exists(ctx, checkout).Result(); err != nil || left != 0 {
		t.Fatalf("checkout hash left: %d, %v", left, err)
	}
}

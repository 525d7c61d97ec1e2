package query

import (
	"hash/fnv"
	"strconv"
	"testing"
)

func TestParseBuild(t *testing.T) {
	for _, tc := range []struct {
		s      string
		b      Build
		prefix string
	}{
		{"3", Build{Version: 3}, "{el:carts}:v3:"},
		{"3g1", Build{Version: 3, Generation: 1}, "{el:carts}:v3g1:"},
		{"12g40", Build{Version: 12, Generation: 40}, "{el:carts}:v12g40:"},
	} {
		b, err := ParseBuild(tc.s)
		if err != nil || b != tc.b || b.String() != tc.s || Prefix("carts", b) != tc.prefix {
			t.Errorf("%q: parsed %+v, %v; String %q; prefix %q", tc.s, b, err, b.String(), Prefix("carts", b))
		}
	}
	// Generation 0 keeps the layout from before generations.
	if Version(3) != (Build{Version: 3}) || !Version(0).IsZero() || Key("carts", Version(3), "cart", "7") != "{el:carts}:v3:cart:7" {
		t.Errorf("Key %q", Key("carts", Version(3), "cart", "7"))
	}
	for _, bad := range []string{"", "0", "-1", "03", "3g0", "3g", "g1", "3g01", "3g-1", "3x1", "3g1g2"} {
		if b, err := ParseBuild(bad); err == nil {
			t.Errorf("ParseBuild(%q) = %+v, want an error", bad, b)
		}
	}
	order := []Build{{1, 0}, {1, 1}, {1, 2}, {2, 0}, {2, 5}, {3, 0}}
	for i := range order {
		for j := range order {
			if order[i].Before(order[j]) != (i < j) {
				t.Errorf("%v.Before(%v) = %v", order[i], order[j], order[i].Before(order[j]))
			}
		}
	}
}

func TestPartitionLayout(t *testing.T) {
	b := Build{Version: 3, Generation: 1}
	// One partition is the unpartitioned layout, byte for byte.
	for _, p := range []Partition{{}, {Index: 0, Count: 1}} {
		if PartitionTag("carts", p) != Tag("carts") || PartitionPrefix("carts", b, p) != Prefix("carts", b) ||
			PartitionKey("carts", b, p, "cart", "7") != Key("carts", b, "cart", "7") ||
			PartitionCheckpointKey("carts", b, p) != CheckpointKey("carts", b) || p.String() != "" {
			t.Errorf("partition %+v changes the layout", p)
		}
	}
	p := Partition{Index: 2, Count: 8}
	if got := PartitionKey("carts", b, p, "cart", "7"); got != "{el:carts:p2}:v3g1:cart:7" {
		t.Errorf("PartitionKey = %q", got)
	}
	if got := PartitionCheckpointKey("carts", b, p); got != "{el:carts:p2}:v3g1:checkpoint" {
		t.Errorf("PartitionCheckpointKey = %q", got)
	}
	if PartitionsKey("carts") != "{el:carts}:partitions" || MembersKey("carts", Version(3)) != "{el:carts}:members:3" ||
		MembersKey("carts", b) != "{el:carts}:members:3g1" {
		t.Error("projection-wide keys left the projection's tag")
	}
	// A View routes by PartitionOf and lists one key per partition.
	v := &View{Name: "carts", Version: 3, Generation: 1, Partitions: 8}
	if v.KeyFor("cart-1", "cart", "1") != PartitionKey("carts", b, Partition{Index: PartitionOf("cart-1", 8), Count: 8}, "cart", "1") {
		t.Errorf("KeyFor = %q", v.KeyFor("cart-1", "cart", "1"))
	}
	keys := v.PartitionKeys("index")
	if len(keys) != 8 || keys[5] != "{el:carts:p5}:v3g1:index" {
		t.Errorf("PartitionKeys = %q", keys)
	}
	one := &View{Name: "carts", Version: 3, Generation: 1}
	if one.KeyFor("cart-1", "cart", "1") != one.Key("cart", "1") || len(one.PartitionKeys("index")) != 1 {
		t.Error("an unpartitioned View routes to other keys than Key")
	}
	// Every partition is used by a spread of keys.
	seen := map[int]bool{}
	for i := range 1000 {
		seen[PartitionOf("cart-"+strconv.Itoa(i), 8)] = true
	}
	if len(seen) != 8 {
		t.Errorf("1000 keys fall in %d of 8 partitions", len(seen))
	}
}

// TestPartitionOfIsPinned: the partition function decides where keys live,
// so it must never change. It is 32-bit FNV-1a (as hash/fnv's New32a
// computes it) modulo n; a few values are pinned as well.
func TestPartitionOfIsPinned(t *testing.T) {
	for _, c := range []struct {
		key  string
		n    int
		want int
	}{{"cart-1", 8, 5}, {"cart-2", 8, 4}, {"a", 8, 4}, {"", 8, 5}, {"cart-1", 1024, 405}, {"cart-2", 1024, 220}, {"cart-1", 1, 0}} {
		if got := PartitionOf(c.key, c.n); got != c.want {
			t.Errorf("PartitionOf(%q, %d) = %d, want %d", c.key, c.n, got, c.want)
		}
	}
	for i := range 1000 {
		key := "stream-" + strconv.Itoa(i)
		h := fnv.New32a()
		h.Write([]byte(key))
		if got, want := PartitionOf(key, 7), int(h.Sum32()%7); got != want {
			t.Fatalf("PartitionOf(%q, 7) = %d, FNV-1a gives %d", key, got, want)
		}
	}
}

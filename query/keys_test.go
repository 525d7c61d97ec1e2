package query

import "testing"

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

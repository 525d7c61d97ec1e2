package eventstore_test

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/eventline/eventline/eventstore"
)

func TestPositionStringRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		pos   eventstore.Position
		token string
	}{
		{eventstore.Start, "0"},
		{eventstore.SeqPosition(42), "42"},
		{eventstore.Position{Commit: 7, Prepare: 3}, "7-3"},
		{eventstore.Position{Commit: 0, Prepare: 1}, "0-1"},
		{eventstore.SeqPosition(math.MaxUint64), "18446744073709551615"},
		{eventstore.Position{Commit: math.MaxUint64, Prepare: math.MaxUint64 - 1}, "18446744073709551615-18446744073709551614"},
	} {
		if got := tc.pos.String(); got != tc.token {
			t.Errorf("%#v.String() = %q, want %q", tc.pos, got, tc.token)
		}
		got, err := eventstore.ParsePosition(tc.token)
		if err != nil || got != tc.pos {
			t.Errorf("ParsePosition(%q) = %#v, %v; want %#v", tc.token, got, err, tc.pos)
		}
	}
}

func TestParsePosition(t *testing.T) {
	if p, err := eventstore.ParsePosition(""); err != nil || p != eventstore.Start {
		t.Errorf(`ParsePosition("") = %v, %v; want Start`, p, err)
	}
	for _, bad := range []string{
		"-", "1-", "-1", "a", "1-a", "1-2-3", " 1", "1 ", "+1", "0x10", "1.5",
		"18446744073709551616",                       // overflows uint64
		"1-18446744073709551616",                     // prepare overflows
		"000000000000000000000000000000000000000001", // longer than any token
	} {
		p, err := eventstore.ParsePosition(bad)
		if !errors.Is(err, eventstore.ErrInvalidPosition) {
			t.Errorf("ParsePosition(%q) = %v, %v; want ErrInvalidPosition", bad, p, err)
		}
	}
}

func TestPositionOrder(t *testing.T) {
	// In the order the log holds them: by commit, then by prepare.
	ordered := []eventstore.Position{
		eventstore.Start,
		{Commit: 0, Prepare: 5},
		eventstore.SeqPosition(1),
		{Commit: 1, Prepare: 2},
		{Commit: 2, Prepare: 0},
		eventstore.SeqPosition(10),
		eventstore.SeqPosition(math.MaxUint64),
	}
	for i, p := range ordered {
		for j, q := range ordered {
			want := 0
			switch {
			case i < j:
				want = -1
			case i > j:
				want = 1
			}
			if got := p.Compare(q); got != want {
				t.Errorf("%s.Compare(%s) = %d, want %d", p, q, got, want)
			}
			if got := p.Before(q); got != (i < j) {
				t.Errorf("%s.Before(%s) = %v, want %v", p, q, got, i < j)
			}
		}
	}
	shuffled := []eventstore.Position{ordered[4], ordered[0], ordered[6], ordered[2], ordered[5], ordered[1], ordered[3]}
	slices.SortFunc(shuffled, eventstore.Position.Compare)
	if !slices.Equal(shuffled, ordered) {
		t.Errorf("sorted = %v, want %v", shuffled, ordered)
	}
	if !eventstore.Start.IsZero() || eventstore.SeqPosition(1).IsZero() || (eventstore.Position{Prepare: 1}).IsZero() {
		t.Error("IsZero must hold for Start only")
	}
}

func TestPositionJSON(t *testing.T) {
	type cursor struct {
		After eventstore.Position `json:"after"`
	}
	in := cursor{After: eventstore.Position{Commit: 9, Prepare: 4}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"after":"9-4"}` {
		t.Errorf("json.Marshal = %s, want the token as a string", b)
	}
	var out cursor
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Errorf("json.Unmarshal(%s) = %+v, %v; want %+v", b, out, err, in)
	}
	if err := json.Unmarshal([]byte(`{"after":"x"}`), &out); !errors.Is(err, eventstore.ErrInvalidPosition) {
		t.Errorf("json.Unmarshal of a bad token: err = %v, want ErrInvalidPosition", err)
	}
}

func FuzzParsePosition(f *testing.F) {
	for _, seed := range []string{
		"", "0", "42", "7-3", "0-1", "18446744073709551615", "18446744073709551616",
		"18446744073709551615-18446744073709551615", "-", "1-", "-1", "1-2-3", "+1", "01", "٣",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := eventstore.ParsePosition(s)
		if err != nil {
			if !errors.Is(err, eventstore.ErrInvalidPosition) {
				t.Fatalf("ParsePosition(%q): error %v does not match ErrInvalidPosition", s, err)
			}
			return
		}
		// Any accepted token names a position whose own token reads back to it.
		again, err := eventstore.ParsePosition(p.String())
		if err != nil || again != p {
			t.Fatalf("ParsePosition(%q) = %#v, but its token %q reads back as %#v, %v", s, p, p.String(), again, err)
		}
	})
}

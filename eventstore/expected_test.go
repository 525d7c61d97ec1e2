package eventstore_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/eventline/eventline/eventstore"
)

func TestExpectedVersion(t *testing.T) {
	if eventstore.Exact(0) != eventstore.NoStream {
		t.Error("Exact(0) != NoStream")
	}
	if (eventstore.ExpectedVersion{}) != eventstore.Any {
		t.Error("the zero ExpectedVersion is not Any")
	}
	cases := []struct {
		e      eventstore.ExpectedVersion
		str    string
		allows []uint64
		denies []uint64
	}{
		{eventstore.Any, "any", []uint64{0, 1, 99}, nil},
		{eventstore.NoStream, "no stream", []uint64{0}, []uint64{1, 99}},
		{eventstore.StreamExists, "stream exists", []uint64{1, 99}, []uint64{0}},
		{eventstore.Exact(3), "3", []uint64{3}, []uint64{0, 2, 4}},
	}
	for _, tc := range cases {
		if got := tc.e.String(); got != tc.str {
			t.Errorf("String() = %q, want %q", got, tc.str)
		}
		if err := tc.e.Validate(); err != nil {
			t.Errorf("%v.Validate(): %v", tc.e, err)
		}
		for _, v := range tc.allows {
			if !tc.e.Allows(v) || tc.e.Check("s", v) != nil {
				t.Errorf("%v does not allow version %d", tc.e, v)
			}
		}
		for _, v := range tc.denies {
			if tc.e.Allows(v) {
				t.Errorf("%v allows version %d", tc.e, v)
			}
			err := tc.e.Check("cart-1", v)
			if !errors.Is(err, eventstore.ErrWrongVersion) {
				t.Fatalf("%v.Check(%d) = %v, want ErrWrongVersion", tc.e, v, err)
			}
			var wv *eventstore.WrongVersionError
			if !errors.As(err, &wv) || wv.StreamID != "cart-1" || wv.Expected != tc.e || wv.Actual != v {
				t.Errorf("%v.Check(%d) = %#v", tc.e, v, err)
			}
			want := fmt.Sprintf("eventstore: wrong expected version for stream %q: expected %s, actual %d", "cart-1", tc.str, v)
			if err.Error() != want {
				t.Errorf("message %q, want %q", err.Error(), want)
			}
		}
	}
	if n, ok := eventstore.Exact(7).Exact(); !ok || n != 7 {
		t.Errorf("Exact(7).Exact() = %d, %v", n, ok)
	}
	for _, e := range []eventstore.ExpectedVersion{eventstore.Any, eventstore.NoStream, eventstore.StreamExists} {
		if _, ok := e.Exact(); ok {
			t.Errorf("%v.Exact() reports an exact version", e)
		}
	}
	if !eventstore.Any.IsAny() || !eventstore.NoStream.IsNoStream() || !eventstore.StreamExists.IsStreamExists() ||
		eventstore.Exact(1).IsAny() || eventstore.Exact(1).IsNoStream() || eventstore.Exact(1).IsStreamExists() {
		t.Error("IsAny/IsNoStream/IsStreamExists disagree with the constructors")
	}
	// A wrapped WrongVersionError still matches.
	wrapped := fmt.Errorf("handling command: %w", eventstore.Exact(2).Check("s", 5))
	if !errors.Is(wrapped, eventstore.ErrWrongVersion) || errors.Is(wrapped, eventstore.ErrStreamNotFound) {
		t.Errorf("errors.Is on a wrapped WrongVersionError is wrong: %v", wrapped)
	}
}

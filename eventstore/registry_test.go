package eventstore_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/eventline/eventline/eventstore"
)

type itemAdded struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// itemAddedV1 is the shape an item_added event had before quantities.
type itemAddedV1 struct {
	SKU string `json:"sku"`
}

type cartClosed struct{}

func newCartRegistry() *eventstore.Registry {
	r := eventstore.NewRegistry()
	eventstore.Register[itemAdded](r, "cart.item_added.v2")
	eventstore.Register[cartClosed](r, "cart.closed")
	// v0 → v1 → v2: a chain of two upcasters.
	r.Upcast("cart.item_added", func(data []byte) (string, []byte, error) {
		var old struct {
			Item string `json:"item"`
		}
		if err := json.Unmarshal(data, &old); err != nil {
			return "", nil, err
		}
		b, err := json.Marshal(itemAddedV1{SKU: old.Item})
		return "cart.item_added.v1", b, err
	})
	r.Upcast("cart.item_added.v1", func(data []byte) (string, []byte, error) {
		var v1 itemAddedV1
		if err := json.Unmarshal(data, &v1); err != nil {
			return "", nil, err
		}
		b, err := json.Marshal(itemAdded{SKU: v1.SKU, Quantity: 1})
		return "cart.item_added.v2", b, err
	})
	return r
}

func record(typ, data string) eventstore.Record {
	return eventstore.Record{
		Event:    eventstore.Event{Type: typ, Data: []byte(data)},
		StreamID: "cart-1", Version: 3, Position: eventstore.Position{Commit: 12, Prepare: 10},
	}
}

func TestRegistryEncodeDecode(t *testing.T) {
	r := newCartRegistry()
	for _, v := range []any{itemAdded{SKU: "tea", Quantity: 2}, &itemAdded{SKU: "cup", Quantity: 1}, cartClosed{}} {
		e, err := r.Encode(v)
		if err != nil {
			t.Fatalf("Encode(%#v): %v", v, err)
		}
		got, err := r.Decode(eventstore.Record{Event: e})
		if err != nil {
			t.Fatalf("Decode(%s %s): %v", e.Type, e.Data, err)
		}
		want := v
		if p, ok := v.(*itemAdded); ok {
			want = *p // Decode returns values, not pointers
		}
		if got != want {
			t.Errorf("Decode(Encode(%#v)) = %#v", v, got)
		}
	}
	if e, _ := r.Encode(itemAdded{SKU: "tea", Quantity: 2}); e.Type != "cart.item_added.v2" || string(e.Data) != `{"sku":"tea","quantity":2}` {
		t.Errorf("Encode = %s %s", e.Type, e.Data)
	}
	if name, ok := r.Name(&cartClosed{}); !ok || name != "cart.closed" {
		t.Errorf("Name(&cartClosed{}) = %q, %v", name, ok)
	}
	if got := r.Types(); strings.Join(got, ",") != "cart.closed,cart.item_added.v2" {
		t.Errorf("Types() = %v", got)
	}
	// Empty data decodes to the zero value: an event may carry no payload.
	if got, err := r.Decode(record("cart.closed", "")); err != nil || got != (cartClosed{}) {
		t.Errorf("Decode with empty data = %#v, %v", got, err)
	}
}

func TestRegistryEncodeUnregistered(t *testing.T) {
	r := newCartRegistry()
	for _, v := range []any{struct{ X int }{1}, nil, 42} {
		if _, err := r.Encode(v); !errors.Is(err, eventstore.ErrUnknownEventType) {
			t.Errorf("Encode(%#v): err = %v, want ErrUnknownEventType", v, err)
		}
	}
	eventstore.Register[func()](r, "not-json")
	if _, err := r.Encode(func() {}); err == nil || !strings.Contains(err.Error(), "not-json") {
		t.Errorf("Encode of a value JSON cannot hold: err = %v, want an error naming the type", err)
	}
}

func TestRegistryUpcastChain(t *testing.T) {
	r := newCartRegistry()
	for _, tc := range []struct{ typ, data string }{
		{"cart.item_added", `{"item":"tea"}`},
		{"cart.item_added.v1", `{"sku":"tea"}`},
		{"cart.item_added.v2", `{"sku":"tea","quantity":1}`},
	} {
		got, err := r.Decode(record(tc.typ, tc.data))
		if err != nil || got != (itemAdded{SKU: "tea", Quantity: 1}) {
			t.Errorf("Decode(%s %s) = %#v, %v; want the v2 value", tc.typ, tc.data, got, err)
		}
	}
}

func TestRegistryDecodeErrors(t *testing.T) {
	r := newCartRegistry()
	r.Upcast("loop.a", func(data []byte) (string, []byte, error) { return "loop.b", data, nil })
	r.Upcast("loop.b", func(data []byte) (string, []byte, error) { return "loop.a", data, nil })
	r.Upcast("to.nowhere", func(data []byte) (string, []byte, error) { return "never.registered", data, nil })
	for _, tc := range []struct {
		name, typ, data string
		want            error
		mention         string
	}{
		{"unknown type", "cart.renamed", `{}`, eventstore.ErrUnknownEventType, ""},
		{"bad JSON", "cart.item_added.v2", `{"sku":`, eventstore.ErrDecode, ""},
		{"wrong JSON type", "cart.item_added.v2", `{"quantity":"two"}`, eventstore.ErrDecode, ""},
		{"JSON array for a struct", "cart.closed", `[1,2]`, eventstore.ErrDecode, ""},
		{"upcaster fails", "cart.item_added", `not json`, eventstore.ErrDecode, "upcast"},
		{"upcast cycle", "loop.a", `{}`, eventstore.ErrDecode, "upcasts"},
		{"upcast to an unknown type", "to.nowhere", `{}`, eventstore.ErrUnknownEventType, "never.registered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := record(tc.typ, tc.data)
			v, err := r.Decode(rec)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decode = %#v, %v; want %v", v, err, tc.want)
			}
			var re *eventstore.RecordError
			if !errors.As(err, &re) {
				t.Fatalf("error %v (%T) is not a *RecordError", err, err)
			}
			if re.Type != tc.typ || re.Position != rec.Position || re.StreamID != "cart-1" || re.Version != 3 {
				t.Errorf("RecordError = %+v, want type %q at %s, cart-1 version 3", re, tc.typ, rec.Position)
			}
			msg := err.Error()
			for _, s := range []string{tc.typ, rec.Position.String(), "cart-1", tc.mention} {
				if !strings.Contains(msg, s) {
					t.Errorf("message %q does not mention %q", msg, s)
				}
			}
		})
	}
}

func TestRegisterConflictsPanic(t *testing.T) {
	mustPanic := func(name string, fn func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		fn()
	}
	r := newCartRegistry()
	eventstore.Register[itemAdded](r, "cart.item_added.v2") // the same mapping again is fine
	mustPanic("a name for two types", func() { eventstore.Register[cartClosed](r, "cart.item_added.v2") })
	mustPanic("two names for a type", func() { eventstore.Register[cartClosed](r, "cart.ended") })
	mustPanic("an empty name", func() { eventstore.Register[struct{}](r, "") })
}

// FuzzRegistryDecode feeds arbitrary type names and data to Decode: it must
// never panic, and every failure must be a *RecordError naming the record.
func FuzzRegistryDecode(f *testing.F) {
	for _, seed := range []struct{ typ, data string }{
		{"cart.item_added.v2", `{"sku":"tea","quantity":2}`},
		{"cart.item_added.v2", `{"quantity":1e400}`},
		{"cart.item_added.v2", `{"sku":"\ud800"}`},
		{"cart.item_added.v2", `null`},
		{"cart.item_added.v2", ``},
		{"cart.item_added.v1", `{"sku":"tea"}`},
		{"cart.item_added", `{"item":"tea"}`},
		{"cart.item_added", `{"item":`},
		{"cart.closed", `{}`},
		{"cart.closed", `[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[`},
		{"counter", `9223372036854775808`},
		{"tags", `["a","b"]`},
		{"attrs", `{"a":1}`},
		{"loop", `{}`},
		{"", `{}`},
		{"\xff\xfe", "\x00\x01"},
		{"cart.item_added.v2 ", `{}`},
	} {
		f.Add(seed.typ, []byte(seed.data))
	}
	r := newCartRegistry()
	eventstore.Register[int64](r, "counter")
	eventstore.Register[[]string](r, "tags")
	eventstore.Register[map[string]int](r, "attrs")
	r.Upcast("loop", func(data []byte) (string, []byte, error) { return "loop", append(data, ' '), nil })
	known := map[string]bool{}
	for _, n := range r.Types() {
		known[n] = true
	}
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		rec := record(typ, "")
		rec.Data = data
		v, err := r.Decode(rec)
		if err == nil {
			name, ok := r.Name(v)
			if !ok || !known[name] {
				t.Fatalf("Decode(%q, %q) = %#v of an unregistered type", typ, data, v)
			}
			return
		}
		var re *eventstore.RecordError
		if !errors.As(err, &re) || re.Type != typ || re.Position != rec.Position {
			t.Fatalf("Decode(%q, %q): error %v does not name the record", typ, data, err)
		}
		if !errors.Is(err, eventstore.ErrUnknownEventType) && !errors.Is(err, eventstore.ErrDecode) {
			t.Fatalf("Decode(%q, %q): error %v matches neither ErrUnknownEventType nor ErrDecode", typ, data, err)
		}
		if utf8.ValidString(typ) && !strings.Contains(err.Error(), fmt.Sprintf("%q", typ)) {
			t.Fatalf("message %q does not quote the type %q", err, typ)
		}
	})
}

package eventstore_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/eventline/eventline/eventstore"
	"github.com/google/uuid"
)

func TestValidateStreamID(t *testing.T) {
	for _, ok := range []string{"a", "cart-1", "order:42/items", "Zoë-日本", strings.Repeat("x", eventstore.MaxStreamIDLen), "a$b"} {
		if err := eventstore.ValidateStreamID(ok); err != nil {
			t.Errorf("ValidateStreamID(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{
		"", "$all", "$ce-cart", " ", "a b", "a\tb", "a\nb", "a\x00b", "a\u00a0b", "a\u2028b", "\xff", "a\xc3",
		strings.Repeat("x", eventstore.MaxStreamIDLen+1),
	} {
		if err := eventstore.ValidateStreamID(bad); !errors.Is(err, eventstore.ErrInvalidStreamID) {
			t.Errorf("ValidateStreamID(%.40q) = %v, want ErrInvalidStreamID", bad, err)
		}
	}
}

func TestPrepareAppend(t *testing.T) {
	id := uuid.New()
	events := []eventstore.Event{{ID: id, Type: "a"}, {Type: "b", Data: []byte("{}")}}
	if err := eventstore.PrepareAppend("s", eventstore.Any, events, 0); err != nil {
		t.Fatal(err)
	}
	if events[0].ID != id {
		t.Error("PrepareAppend replaced the caller's id")
	}
	if events[1].ID == uuid.Nil {
		t.Error("PrepareAppend left an event without an id")
	}

	if err := eventstore.PrepareAppend("$bad", eventstore.Any, nil, 0); !errors.Is(err, eventstore.ErrInvalidStreamID) {
		t.Errorf("bad stream id: %v", err)
	}
	for name, typ := range map[string]string{"empty": "", "long": strings.Repeat("t", eventstore.MaxTypeLen+1), "not UTF-8": "\xfe"} {
		err := eventstore.PrepareAppend("orders", eventstore.Any, []eventstore.Event{{Type: "ok"}, {Type: typ}}, 0)
		if !errors.Is(err, eventstore.ErrInvalidEvent) || !strings.Contains(err.Error(), `"orders"`) || !strings.Contains(err.Error(), "event 1") {
			t.Errorf("%s type: err = %v, want ErrInvalidEvent naming the stream and the event", name, err)
		}
	}

	big := eventstore.Event{Type: "big", Data: make([]byte, 90), Metadata: eventstore.Metadata{
		CorrelationID: "c", CausationID: "d", Headers: map[string]string{"k": "vvvvvvv"}, // 90+1+1+1+7 = 100
	}}
	if err := eventstore.PrepareAppend("s", eventstore.Any, []eventstore.Event{big}, 100); err != nil {
		t.Errorf("an event of exactly the limit: %v", err)
	}
	if err := eventstore.PrepareAppend("s", eventstore.Any, []eventstore.Event{big}, 99); !errors.Is(err, eventstore.ErrTooLarge) {
		t.Errorf("an event over the limit: err = %v, want ErrTooLarge", err)
	}
}

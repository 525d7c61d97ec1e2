package commandapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/eventline/eventline/eventstore"
)

// The answers of the commands are appended by hand; each must be what
// json.Marshal writes for its documented response type.
func TestAnswersAreMarshal(t *testing.T) {
	pos := eventstore.SeqPosition(1234)
	for _, c := range []struct {
		field, id string
		doc       any
	}{
		{"cart_id", "c-1", OpenCartResponse{CartID: "c-1", Position: pos.String()}},
		{"", "", PositionResponse{Position: pos.String()}},
		{"order_id", "0190a<&>", CheckOutResponse{OrderID: "0190a<&>", Position: pos.String()}},
		{"customer_id", "zoe\u2028", RegisterCustomerResponse{CustomerID: "zoe\u2028", Position: pos.String()}},
	} {
		want, err := json.Marshal(c.doc)
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		writeAnswer(w, http.StatusCreated, c.field, c.id, pos)
		if got := w.Body.String(); got != string(want)+"\n" || w.Code != http.StatusCreated {
			t.Errorf("%T: %d %q, want %q", c.doc, w.Code, got, want)
		}
	}
}

package commandapi_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/http/commandapi"
)

// A command endpoint decodes its body strictly, decides, and writes any error
// with an honest status and a message for the client: a refusal answers the
// domain's rule, not the stream it was refused on. Here the decider stands in
// for a command.Handler.
func ExampleWriteError() {
	addItem := func(w http.ResponseWriter, r *http.Request) {
		req, err := commandapi.DecodeAddItem(w, r)
		if err != nil {
			commandapi.WriteError(w, err)
			return
		}
		state := cart.Decider.Fold(cart.Opened{CustomerID: "ann"})
		if _, err := cart.Decide(state, req.Command()); err != nil {
			// command.Handler returns refusals wrapped like this.
			commandapi.WriteError(w, &command.RejectedError{StreamID: "cart-1", Err: err})
			return
		}
		w.WriteHeader(http.StatusOK)
	}

	for _, body := range []string{
		`{"product_id":"apple","quantity":2,"unit_price_cents":1299}`,
		`{"product_id":"apple","quantity":1000,"unit_price_cents":1299}`,
		`{"product_id":"apple","quantity":"2","unit_price_cents":1299}`,
		`{"product_id":"apple","quantity":2}`,
	} {
		r := httptest.NewRequest(http.MethodPost, "/carts/1/items", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		addItem(w, r)
		fmt.Println(strings.TrimSpace(fmt.Sprint(w.Code, " ", w.Body.String())))
	}
	// Output:
	// 200
	// 422 {"error":"cart: quantity out of range: adding 1000 of product \"apple\", want 1..999","code":"rule_violated"}
	// 400 {"error":"field \"quantity\" must be an integer that fits in 64 bits, got string","code":"malformed"}
	// 400 {"error":"field \"unit_price_cents\" is required","code":"malformed"}
}

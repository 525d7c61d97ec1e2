package commandapi_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/eventline/eventline/sample/http/commandapi"
	"github.com/eventline/eventline/sample/http/httpjson"
)

// decoder adapts the typed decoders to one signature for the tables.
type decoder func(http.ResponseWriter, *http.Request) (any, error)

func adapt[T any](f func(http.ResponseWriter, *http.Request) (T, error)) decoder {
	return func(w http.ResponseWriter, r *http.Request) (any, error) { return f(w, r) }
}

var decoders = map[string]decoder{
	"open cart":         adapt(commandapi.DecodeOpenCart),
	"add item":          adapt(commandapi.DecodeAddItem),
	"change quantity":   adapt(commandapi.DecodeChangeQuantity),
	"register customer": adapt(commandapi.DecodeRegisterCustomer),
}

func request(contentType string, body io.Reader) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", body)
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	return r
}

const jsonType = "application/json"

func TestDecodeAccepts(t *testing.T) {
	cases := []struct {
		decoder, contentType, body string
		want                       any
	}{
		{"open cart", jsonType, `{"customer_id":"ann"}`, commandapi.OpenCartRequest{CustomerID: "ann"}},
		{"open cart", "application/json; charset=UTF-8", `{"customer_id":"ann","cart_id":"c-1"}`, commandapi.OpenCartRequest{CustomerID: "ann", CartID: "c-1"}},
		{"open cart", jsonType, ` {"cart_id":"","customer_id":"ann"} ` + "\n", commandapi.OpenCartRequest{CustomerID: "ann"}},
		{"open cart", jsonType, `{"customer_id":"ann","cart_id":null}`, commandapi.OpenCartRequest{CustomerID: "ann"}},
		{"add item", jsonType, `{"product_id":"apple","quantity":2,"unit_price_cents":1299}`, commandapi.AddItemRequest{ProductID: "apple", Quantity: 2, UnitPriceCents: 1299}},
		// Shape, not rules: the cart refuses these values with 422.
		{"add item", jsonType, `{"product_id":"a b","quantity":0,"unit_price_cents":-1}`, commandapi.AddItemRequest{ProductID: "a b", Quantity: 0, UnitPriceCents: -1}},
		{"change quantity", jsonType, `{"quantity":3}`, commandapi.ChangeQuantityRequest{Quantity: 3}},
		{"register customer", jsonType, `{"credit_limit_cents":0}`, commandapi.RegisterCustomerRequest{}},
		{"register customer", jsonType, `{"customer_id":"ann","credit_limit_cents":50000}`, commandapi.RegisterCustomerRequest{CustomerID: "ann", CreditLimitCents: 50000}},
	}
	for _, c := range cases {
		got, err := decoders[c.decoder](httptest.NewRecorder(), request(c.contentType, strings.NewReader(c.body)))
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s %s: got %+v, %v; want %+v", c.decoder, c.body, got, err, c.want)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	big := `{"quantity":1}` + strings.Repeat(" ", httpjson.MaxBodyBytes)
	cases := []struct {
		name, decoder, contentType, body string
		status                           int
		code                             string
		mention                          string // the message must contain it
	}{
		{"no content type", "add item", "", `{}`, 415, httpjson.CodeUnsupportedMediaType, "Content-Type"},
		{"text/plain", "add item", "text/plain", `{}`, 415, httpjson.CodeUnsupportedMediaType, "text/plain"},
		{"form", "open cart", "application/x-www-form-urlencoded", `customer_id=ann`, 415, httpjson.CodeUnsupportedMediaType, "application/x-www-form-urlencoded"},
		{"garbage content type", "open cart", ";;;", `{}`, 415, httpjson.CodeUnsupportedMediaType, ";;;"},
		{"latin1", "open cart", "application/json; charset=latin1", `{"customer_id":"ann"}`, 415, httpjson.CodeUnsupportedMediaType, "latin1"},
		{"empty body", "open cart", jsonType, ``, 400, httpjson.CodeMalformed, "empty"},
		{"whitespace body", "open cart", jsonType, "  \n", 400, httpjson.CodeMalformed, "empty"},
		{"truncated", "open cart", jsonType, `{"customer_id":"an`, 400, httpjson.CodeMalformed, "ends"},
		{"syntax", "open cart", jsonType, `{"customer_id" "ann"}`, 400, httpjson.CodeMalformed, "byte"},
		{"array", "open cart", jsonType, `[]`, 400, httpjson.CodeMalformed, "JSON object"},
		{"string", "change quantity", jsonType, `"3"`, 400, httpjson.CodeMalformed, "JSON object"},
		{"null body", "change quantity", jsonType, `null`, 400, httpjson.CodeMalformed, `"quantity" is required`},
		{"unknown field", "open cart", jsonType, `{"customer_id":"ann","admin":true}`, 400, httpjson.CodeMalformed, `"admin"`},
		{"field of another endpoint", "change quantity", jsonType, `{"quantity":1,"product_id":"apple"}`, 400, httpjson.CodeMalformed, `"product_id"`},
		{"trailing object", "open cart", jsonType, `{"customer_id":"ann"}{"customer_id":"bob"}`, 400, httpjson.CodeMalformed, "after"},
		{"trailing garbage", "open cart", jsonType, `{"customer_id":"ann"} x`, 400, httpjson.CodeMalformed, "after"},
		{"missing customer_id", "open cart", jsonType, `{"cart_id":"c-1"}`, 400, httpjson.CodeMalformed, `"customer_id" is required`},
		{"empty customer_id", "open cart", jsonType, `{"customer_id":""}`, 400, httpjson.CodeMalformed, `"customer_id" must not be empty`},
		{"null customer_id", "open cart", jsonType, `{"customer_id":null}`, 400, httpjson.CodeMalformed, `"customer_id" is required`},
		{"numeric customer_id", "open cart", jsonType, `{"customer_id":42}`, 400, httpjson.CodeMalformed, `"customer_id" must be a string`},
		{"numeric cart_id", "open cart", jsonType, `{"customer_id":"ann","cart_id":7}`, 400, httpjson.CodeMalformed, `"cart_id"`},
		{"missing product_id", "add item", jsonType, `{"quantity":1,"unit_price_cents":1}`, 400, httpjson.CodeMalformed, `"product_id" is required`},
		{"missing quantity", "add item", jsonType, `{"product_id":"a","unit_price_cents":1}`, 400, httpjson.CodeMalformed, `"quantity" is required`},
		{"missing price", "add item", jsonType, `{"product_id":"a","quantity":1}`, 400, httpjson.CodeMalformed, `"unit_price_cents" is required`},
		{"string quantity", "add item", jsonType, `{"product_id":"a","quantity":"2","unit_price_cents":1}`, 400, httpjson.CodeMalformed, `"quantity" must be an integer`},
		{"fractional quantity", "add item", jsonType, `{"product_id":"a","quantity":2.5,"unit_price_cents":1}`, 400, httpjson.CodeMalformed, `"quantity"`},
		{"huge price", "add item", jsonType, `{"product_id":"a","quantity":1,"unit_price_cents":1e30}`, 400, httpjson.CodeMalformed, `"unit_price_cents"`},
		{"price overflowing int64", "add item", jsonType, `{"product_id":"a","quantity":1,"unit_price_cents":9223372036854775808}`, 400, httpjson.CodeMalformed, `"unit_price_cents"`},
		{"object quantity", "change quantity", jsonType, `{"quantity":{}}`, 400, httpjson.CodeMalformed, `"quantity"`},
		{"missing limit", "register customer", jsonType, `{"customer_id":"ann"}`, 400, httpjson.CodeMalformed, `"credit_limit_cents" is required`},
		{"boolean limit", "register customer", jsonType, `{"credit_limit_cents":true}`, 400, httpjson.CodeMalformed, `"credit_limit_cents"`},
		{"too large", "change quantity", jsonType, big, 413, httpjson.CodeTooLarge, "larger than"},
		{"too large inside a string", "open cart", jsonType, `{"customer_id":"` + strings.Repeat("a", httpjson.MaxBodyBytes) + `"}`, 413, httpjson.CodeTooLarge, "larger than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := decoders[c.decoder](httptest.NewRecorder(), request(c.contentType, strings.NewReader(c.body)))
			e, ok := errors.AsType[*httpjson.Error](err)
			if !ok {
				t.Fatalf("got %v (%T), want an *httpjson.Error", err, err)
			}
			if e.Status != c.status || e.Code != c.code || !strings.Contains(e.Message, c.mention) {
				t.Errorf("got %d %s %q; want %d %s mentioning %q", e.Status, e.Code, e.Message, c.status, c.code, c.mention)
			}
		})
	}
}

// TestDecodeAtTheLimit checks that a body of exactly MaxBodyBytes decodes.
func TestDecodeAtTheLimit(t *testing.T) {
	body := `{"quantity":1}`
	body += strings.Repeat(" ", httpjson.MaxBodyBytes-len(body))
	got, err := commandapi.DecodeChangeQuantity(httptest.NewRecorder(), request(jsonType, strings.NewReader(body)))
	if err != nil || got.Quantity != 1 {
		t.Fatalf("got %+v, %v", got, err)
	}
}

// TestDecodeNilBody covers a request built by hand, whose Body may be nil.
func TestDecodeNilBody(t *testing.T) {
	r := &http.Request{Method: http.MethodPost, Header: http.Header{"Content-Type": {jsonType}}}
	_, err := commandapi.DecodeOpenCart(httptest.NewRecorder(), r)
	if e, ok := errors.AsType[*httpjson.Error](err); !ok || e.Status != 400 {
		t.Fatalf("got %v", err)
	}
	_, err = commandapi.DecodeOpenCart(httptest.NewRecorder(), request(jsonType, bytes.NewReader(nil)))
	if e, ok := errors.AsType[*httpjson.Error](err); !ok || e.Status != 400 {
		t.Fatalf("got %v", err)
	}
}

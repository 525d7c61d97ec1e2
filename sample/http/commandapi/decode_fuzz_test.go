package commandapi_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/eventline/eventline/sample/http/commandapi"
	"github.com/eventline/eventline/sample/http/httpjson"
)

// The fuzz targets prove, for any Content-Type and body, that a decoder does
// not panic, that every error it returns is an *httpjson.Error with a 4xx status
// that WriteError writes as a JSON error body, and that what it accepts was
// JSON with the required fields, which re-encodes and decodes to itself.

var codes4xx = map[string]bool{
	httpjson.CodeMalformed: true, httpjson.CodeTooLarge: true, httpjson.CodeUnsupportedMediaType: true,
}

// commonSeeds are bodies every decoder should meet: valid and broken JSON,
// wrong shapes, odd encodings, trailing data.
var commonSeeds = []string{
	``, ` `, `null`, `{}`, `[]`, `"x"`, `1`, `true`, `{`, `}`, `{"`, `{"a":}`, `{"a":1}`, `{} {}`, `{}x`,
	`{"customer_id":"ann"}`, `{"quantity":1}`, `{"credit_limit_cents":5}`,
	"{\"customer_id\":\"\xff\xfe\"}", `{"customer_id":"\u0000"}`, `{"customer_id":"\ud800"}`,
	"\ufeff{}", `{"quantity":1,"quantity":2}`, `{"quantity":-0}`, `{"quantity":1e2}`,
	`{"quantity":99999999999999999999}`, `{"quantity":[1]}`, `{"quantity":{"a":1}}`,
	strings.Repeat(`[`, 10000), strings.Repeat(`{"a":`, 5000),
}

var contentTypes = []string{
	"application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "application/json;charset=\"UTF-8\"",
	"", "text/plain", "application/json; charset=latin1", "application/json; =", "application/jsonx", "multipart/form-data; boundary=x",
}

func addSeeds(f *testing.F, bodies ...string) {
	for i, b := range append(append([]string(nil), commonSeeds...), bodies...) {
		f.Add(contentTypes[i%len(contentTypes)], []byte(b))
		f.Add("application/json", []byte(b))
	}
}

// fuzzDecode checks one input; valid reports what is wrong with an accepted
// request.
func fuzzDecode[T any](t *testing.T, decode func(http.ResponseWriter, *http.Request) (T, error), contentType string, body []byte, valid func(T) error) {
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	r.Header.Set("Content-Type", contentType)
	got, err := decode(httptest.NewRecorder(), r)
	if err != nil {
		e, ok := errors.AsType[*httpjson.Error](err)
		if !ok {
			t.Fatalf("error %v (%T) is not an *httpjson.Error", err, err)
		}
		if e.Status < 400 || e.Status > 499 || !codes4xx[e.Code] || e.Message == "" {
			t.Fatalf("error maps to %d %q %q", e.Status, e.Code, e.Message)
		}
		w := httptest.NewRecorder()
		commandapi.WriteError(w, err)
		var out httpjson.Body
		if jerr := json.Unmarshal(w.Body.Bytes(), &out); jerr != nil || w.Code != e.Status || out.Code != e.Code || out.Error != e.Message {
			t.Fatalf("WriteError wrote %d %q (%v), want %d %s", w.Code, w.Body, jerr, e.Status, e.Code)
		}
		return
	}
	if mt, _, perr := mime.ParseMediaType(contentType); perr != nil || mt != "application/json" {
		t.Fatalf("accepted Content-Type %q", contentType)
	}
	if len(body) > httpjson.MaxBodyBytes {
		t.Fatalf("accepted a body of %d bytes", len(body))
	}
	if !json.Valid(body) {
		t.Fatalf("accepted invalid JSON %q", body)
	}
	if verr := valid(got); verr != nil {
		t.Fatalf("accepted %+v: %v", got, verr)
	}
	again, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	r = httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(again))
	r.Header.Set("Content-Type", "application/json")
	back, err := decode(httptest.NewRecorder(), r)
	if err != nil || !reflect.DeepEqual(back, got) {
		t.Fatalf("%+v re-encoded as %s decodes to %+v, %v", got, again, back, err)
	}
}

func FuzzDecodeOpenCart(f *testing.F) {
	addSeeds(f, `{"customer_id":"ann","cart_id":"c-1"}`, `{"customer_id":"ann","cart_id":null}`, `{"customer_id":""}`,
		`{"customer_id":1}`, `{"customer_id":"ann","extra":1}`, `{"CUSTOMER_ID":"ann"}`)
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		fuzzDecode(t, commandapi.DecodeOpenCart, contentType, body, func(r commandapi.OpenCartRequest) error {
			if r.CustomerID == "" {
				return fmt.Errorf("empty customer_id")
			}
			return nil
		})
	})
}

func FuzzDecodeAddItem(f *testing.F) {
	addSeeds(f, `{"product_id":"apple","quantity":2,"unit_price_cents":1299}`, `{"product_id":"apple","quantity":2}`,
		`{"product_id":"apple","quantity":"2","unit_price_cents":1}`, `{"product_id":"","quantity":2,"unit_price_cents":1}`,
		`{"product_id":"a","quantity":2.0,"unit_price_cents":1}`, `{"product_id":"a","quantity":1,"unit_price_cents":9223372036854775807}`)
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		fuzzDecode(t, commandapi.DecodeAddItem, contentType, body, func(r commandapi.AddItemRequest) error {
			if r.ProductID == "" {
				return fmt.Errorf("empty product_id")
			}
			return nil
		})
	})
}

func FuzzDecodeChangeQuantity(f *testing.F) {
	addSeeds(f, `{"quantity":3}`, `{"quantity":0}`, `{"quantity":null}`, `{"quantity":3,"product_id":"a"}`, `{"quantity":3}   `)
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		fuzzDecode(t, commandapi.DecodeChangeQuantity, contentType, body, func(commandapi.ChangeQuantityRequest) error { return nil })
	})
}

func FuzzDecodeRegisterCustomer(f *testing.F) {
	addSeeds(f, `{"credit_limit_cents":50000}`, `{"customer_id":"ann","credit_limit_cents":0}`, `{"customer_id":"ann"}`,
		`{"credit_limit_cents":-1}`, `{"credit_limit_cents":1.5}`, `{"customer_id":null,"credit_limit_cents":1}`)
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		fuzzDecode(t, commandapi.DecodeRegisterCustomer, contentType, body, func(commandapi.RegisterCustomerRequest) error { return nil })
	})
}

package httpjson_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/eventline/eventline/sample/http/httpjson"
)

// appendStringCases hold every kind of string json.Marshal treats apart:
// the plain ids the fast path copies, and the escapes, HTML-safe
// characters, control characters, U+2028 and invalid UTF-8 it leaves to
// encoding/json.
var appendStringCases = []string{
	"", "cart-42", "0/1f", "a.b_c~d-e", "with space", "quote\"d", `back\slash`,
	"<script>", "a&b", "tab\tnew\nline\r", "\x00\x01\x1f\x7f", "\b\f", "é", "日本",
	"\u2028\u2029", "bad \xff utf-8", "\xc3", "~!@#$%^*()_+={}[]|:;',.?/`",
}

func TestAppendStringIsMarshal(t *testing.T) {
	for _, s := range appendStringCases {
		checkAppendString(t, s)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range appendStringCases {
		f.Add(s)
	}
	f.Fuzz(checkAppendString)
}

func checkAppendString(t *testing.T, s string) {
	want, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	got := httpjson.AppendString([]byte("x"), s)
	if !bytes.Equal(got, append([]byte("x"), want...)) {
		t.Errorf("AppendString(%q) = %s, json.Marshal gives %s", s, got[1:], want)
	}
}

func TestAppendObjectIsMarshal(t *testing.T) {
	v := struct {
		A string `json:"a"`
		B int64  `json:"b"`
		C uint64 `json:"c"`
	}{"x<y", -12, 1 << 63}
	want, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	b := append([]byte(nil), '{')
	b = httpjson.AppendString(httpjson.AppendField(b, "a"), v.A)
	b = httpjson.AppendInt(httpjson.AppendField(b, "b"), v.B)
	b = httpjson.AppendUint(httpjson.AppendField(b, "c"), v.C)
	b = append(b, '}')
	if !bytes.Equal(b, want) {
		t.Errorf("appended %s, json.Marshal gives %s", b, want)
	}
}

func TestWriteBody(t *testing.T) {
	for _, noStore := range []bool{false, true} {
		w := httptest.NewRecorder()
		httpjson.WriteBody(w, http.StatusCreated, noStore, []byte("{\"a\":1}\n"))
		res := w.Result()
		if res.StatusCode != http.StatusCreated || w.Body.String() != "{\"a\":1}\n" ||
			res.Header.Get("Content-Length") != "8" ||
			res.Header.Get("Content-Type") != "application/json; charset=utf-8" ||
			res.Header.Get("X-Content-Type-Options") != "nosniff" ||
			(res.Header.Get("Cache-Control") == "no-store") != noStore {
			t.Errorf("noStore %v: %d %v %q", noStore, res.StatusCode, res.Header, w.Body)
		}
	}
}

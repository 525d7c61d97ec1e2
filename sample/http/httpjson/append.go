package httpjson

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// The answers on the hot paths (a query's document, a command's position)
// are built by hand with the appenders below instead of json.Marshal, which
// walks the value by reflection and copies its output once more. They write
// exactly the bytes json.Marshal writes for the same value, which the tests
// check against it.

// AppendString appends s as a JSON string, byte for byte as json.Marshal
// writes it (HTML-safe escapes, invalid UTF-8 as U+FFFD). Strings of
// printable ASCII that need no escape, the ids and positions of the
// sample, are copied as they are; any other string is left to
// encoding/json.
func AppendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, err := json.Marshal(s)
			if err != nil {
				// json.Marshal encodes every string; unreachable.
				return append(b, `""`...)
			}
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// AppendField appends "name": with the comma before it unless it is the
// first field of its object (b ends with '{'). name must need no escaping.
func AppendField(b []byte, name string) []byte {
	if len(b) > 0 && b[len(b)-1] != '{' {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, name...)
	return append(b, '"', ':')
}

// AppendInt appends n as a JSON number.
func AppendInt(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 10) }

// AppendUint appends n as a JSON number.
func AppendUint(b []byte, n uint64) []byte { return strconv.AppendUint(b, n, 10) }

// WriteBody answers status with body, a JSON value followed by a newline
// (as json.Encoder writes one): the JSON headers (SetHeaders) and its
// Content-Length, and one Write.
func WriteBody(w http.ResponseWriter, status int, noStore bool, body []byte) {
	h := w.Header()
	SetHeaders(h, noStore)
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	// The status is sent; a failed write means the client is gone.
	_, _ = w.Write(body)
}

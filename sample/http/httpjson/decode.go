package httpjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
)

// MaxBodyBytes is the largest request body the decoders read. The largest
// valid command body is well under 1 KiB.
const MaxBodyBytes = 64 << 10

// Decode reads r's body into v strictly: application/json only, at most
// MaxBodyBytes, one JSON value with no unknown fields and nothing after it.
// Every error is an *Error with a 4xx status whose message names what was
// wrong. Decode pointer fields to tell an absent field from a zero one, and
// check them with Required and RequiredString.
func Decode(w http.ResponseWriter, r *http.Request, v any) error {
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	if r.Body == nil {
		return malformed("request body is empty; want a JSON object", nil)
	}
	// Refuse on the declared length before reading a byte. The first read
	// of the body is what makes net/http answer "100 Continue" to a client
	// that sent "Expect: 100-continue" (curl does for large uploads); told
	// to continue, the client sends the whole body, the server stops
	// reading at MaxBodyBytes and closes, and the client often sees a reset
	// instead of the 413. Not reading lets the server answer 413 at once,
	// and the client never sends the body.
	if r.ContentLength > MaxBodyBytes {
		return errTooLarge(nil)
	}
	// MaxBytesReader, not io.LimitReader: it tells the server to close the
	// connection rather than read the rest of an oversized body.
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	// A second value or any other trailing bytes make the body ambiguous.
	switch _, err := dec.Token(); {
	case err == io.EOF:
		return nil
	case err == nil:
		return malformed("unexpected data after the JSON object", nil)
	default:
		if e := tooLarge(err); e != nil {
			return e
		}
		return malformed("unexpected data after the JSON object", err)
	}
}

func checkContentType(ct string) error {
	// What clients send nearly always, checked without parsing: parsing
	// allocates a map of the parameters for each request.
	if ct == "application/json" || ct == "application/json; charset=utf-8" {
		return nil
	}
	if ct == "" {
		return &Error{Status: http.StatusUnsupportedMediaType, Code: CodeUnsupportedMediaType,
			Message: "Content-Type is missing; want application/json"}
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return &Error{Status: http.StatusUnsupportedMediaType, Code: CodeUnsupportedMediaType,
			Message: fmt.Sprintf("Content-Type %q is not supported; want application/json", ct), Err: err}
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return &Error{Status: http.StatusUnsupportedMediaType, Code: CodeUnsupportedMediaType,
			Message: fmt.Sprintf("charset %q is not supported; want utf-8", cs)}
	}
	return nil
}

// decodeError turns an encoding/json error into a 400 (or 413) that says
// what was wrong and, where json knows it, which field.
func decodeError(err error) error {
	if e := tooLarge(err); e != nil {
		return e
	}
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return malformed("request body is empty; want a JSON object", err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return malformed("request body ends in the middle of the JSON value", err)
	case errors.As(err, &syntax):
		return malformed(fmt.Sprintf("malformed JSON at byte %d: %v", syntax.Offset, err), err)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return malformed(fmt.Sprintf("request body must be a JSON object, got %s", typ.Value), err)
		}
		return malformed(fmt.Sprintf("field %q must be %s, got %s", typ.Field, kindName(typ.Type), typ.Value), err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no typed error for this; the message names the field.
		return malformed(fmt.Sprintf("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field ")), err)
	}
	// Other encoding/json errors carry its package prefix; say it plainly.
	return malformed("malformed JSON", err)
}

// tooLarge returns a 413 when err says the body went past MaxBodyBytes, and
// nil otherwise.
func tooLarge(err error) error {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return errTooLarge(err)
	}
	return nil
}

func errTooLarge(err error) *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge,
		Message: fmt.Sprintf("request body is larger than %d bytes", MaxBodyBytes), Err: err}
}

func kindName(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprintf("an integer that fits in %d bits", t.Bits())
	case reflect.Struct:
		return "a JSON object"
	}
	return t.Kind().String()
}

func malformed(msg string, err error) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeMalformed, Message: msg, Err: err}
}

// Required returns a 400 naming field when it is absent or null (present is
// false).
func Required(field string, present bool) error {
	if present {
		return nil
	}
	return malformed(fmt.Sprintf("field %q is required", field), nil)
}

// RequiredString returns a 400 naming field when it is absent, null or empty.
func RequiredString(field string, s *string) error {
	if s != nil && *s == "" {
		return malformed(fmt.Sprintf("field %q must not be empty", field), nil)
	}
	return Required(field, s != nil)
}

package httpjson

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
)

// Body is the JSON body of every error response of the sample.
type Body struct {
	// Error says what went wrong, for a person.
	Error string `json:"error"`
	// Code says it for a program: one of the codes below.
	Code string `json:"code"`
	// Dependency names the backing service that is down ("store", "redis",
	// "broker") when its circuit breaker refused the request; empty
	// otherwise.
	Dependency string `json:"dependency,omitempty"`
}

// The machine-readable codes of the sample's APIs, the "code" of a Body.
const (
	CodeMalformed            = "malformed"              // 400
	CodeUnauthorized         = "unauthorized"           // 401: web admin token missing or wrong
	CodeForbidden            = "forbidden"              // 403: web admin request from another origin
	CodeAdminDisabled        = "admin_disabled"         // 403: no web admin token is configured
	CodeNotFound             = "not_found"              // 404
	CodeMethodNotAllowed     = "method_not_allowed"     // 405, with Allow
	CodeConflict             = "conflict"               // 409
	CodeTooLarge             = "too_large"              // 413
	CodeUnsupportedMediaType = "unsupported_media_type" // 415
	CodeRuleViolated         = "rule_violated"          // 422: a domain rule refused the command
	CodeInternal             = "internal"               // 500
	CodeUnavailable          = "unavailable"            // 502/503: a backing service cannot be reached
	CodeNotReady             = "not_ready"              // 503: a read model has no active build yet
	CodeOverloaded           = "overloaded"             // 503: too many queries wait for a position
	CodeTimeout              = "timeout"                // 504: a read model did not reach ?after= in time
)

// Error is an error with the HTTP status and code to answer it with. Message
// is shown to the client; Err, if any, is the cause, for errors.Is and logs.
type Error struct {
	Status  int
	Code    string
	Message string
	Err     error
	// Dependency and RetryAfter are set when a circuit breaker refused the
	// request (a Down error): the dependency that is down, and the
	// Retry-After header's value.
	Dependency, RetryAfter string
}

// NewError returns an *Error with no cause.
func NewError(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Mapping maps the errors matching Target (errors.Is), or Match when Target
// is nil, to an HTTP status and code.
type Mapping struct {
	Target error
	// Match, used when Target is nil, tells errors that no sentinel names
	// (say, any network error).
	Match  func(error) bool
	Status int
	Code   string
	// Message is the text the client reads. Empty means the error's own
	// text: leave it empty only for errors written for the client. A 5xx
	// always answers a generic text unless Message is set.
	Message string
}

func (m Mapping) matches(err error) bool {
	if m.Target != nil {
		return errors.Is(err, m.Target)
	}
	return m.Match != nil && m.Match(err)
}

// Classify returns err as an *Error: err itself if it is one (errors.As),
// else the status and code of the first mapping that matches, else 500 with
// a generic message.
func Classify(err error, mappings []Mapping) *Error {
	if err == nil {
		return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error"}
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	if d, ok := DownFrom(err); ok {
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: DownMessage(d),
			Err: err, Dependency: d.Dependency(), RetryAfter: d.RetryAfterSeconds()}
	}
	for _, m := range mappings {
		if !m.matches(err) {
			continue
		}
		e := &Error{Status: m.Status, Code: m.Code, Message: m.Message, Err: err}
		switch {
		case e.Message != "":
		case m.Status >= 500:
			e.Message = "a backing service is unavailable; retry later"
		default:
			e.Message = err.Error()
		}
		return e
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error", Err: err}
}

// WriteError writes err as a JSON error body, classified with mappings.
func WriteError(w http.ResponseWriter, err error, mappings []Mapping) {
	Write(w, Classify(err, mappings))
}

// Write writes e as a JSON error body with e's status. A 503 or 504 also
// gets Retry-After: e.RetryAfter, else 1.
func Write(w http.ResponseWriter, e *Error) {
	h := w.Header()
	SetHeaders(h, true)
	if e.Status == http.StatusServiceUnavailable || e.Status == http.StatusGatewayTimeout {
		retry := "1"
		if e.RetryAfter != "" {
			retry = e.RetryAfter
		}
		h.Set("Retry-After", retry)
	}
	w.WriteHeader(e.Status)
	// The status is already sent; a failed write means the client is gone.
	_ = json.NewEncoder(w).Encode(Body{Error: e.Message, Code: e.Code, Dependency: e.Dependency})
}

// The header values of JSON answers. They are shared by all answers and
// never modified in place (Header.Set and Header.Add replace or copy them):
// that saves an allocation per header and request over Header.Set, which
// copies its value into a new slice each time.
var (
	hdrContentType = []string{"application/json; charset=utf-8"}
	hdrNosniff     = []string{"nosniff"}
	hdrNoStore     = []string{"no-store"}
)

// WriteBody writes body, an encoded JSON document, as an answer with status:
// a newline after it, the headers of SetHeaders and its Content-Length.
// Headers of its own the caller sets before.
func WriteBody(w http.ResponseWriter, status int, body []byte, noStore bool) {
	body = append(body, '\n')
	h := w.Header()
	SetHeaders(h, noStore)
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	// The status is sent; a failed write means the client is gone.
	_, _ = w.Write(body)
}

// SetHeaders sets the headers of a JSON answer: its content type and
// X-Content-Type-Options: nosniff, and with noStore Cache-Control: no-store.
func SetHeaders(h http.Header, noStore bool) {
	h["Content-Type"] = hdrContentType
	h["X-Content-Type-Options"] = hdrNosniff
	if noStore {
		h["Cache-Control"] = hdrNoStore
	}
}

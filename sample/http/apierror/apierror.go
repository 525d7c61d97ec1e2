// Package apierror is the wire shape of the sample's HTTP errors, shared by
// the command API (sample/http/api), the query API (sample/http/queryapi) and the web
// page (sample/http/web): one body type and the codes they have in common, so
// that a client reads every error of the sample the same way. It depends on
// nothing, so that the read side can use it without the command side that
// package sample/http/api brings.
package apierror

import "errors"

// Body is the JSON body of every error response of the sample.
type Body struct {
	// Error says what went wrong, for a person.
	Error string `json:"error"`
	// Code says it for a program: one of the codes below, or one a package
	// documents for itself.
	Code string `json:"code"`
	// Dependency names the backing service that is down ("store", "redis",
	// "broker") when a circuit breaker refused the request; empty otherwise.
	Dependency string `json:"dependency,omitempty"`
}

// Down is implemented by errors that know which dependency is down and
// when to try again: *breaker.OpenError does. Answering them needs no import
// of the breaker, which keeps this package free of dependencies.
type Down interface {
	error
	// Dependency names the dependency.
	Dependency() string
	// RetryAfterSeconds is the value of a Retry-After header.
	RetryAfterSeconds() string
}

// DownFrom returns the Down error in err's chain, if any.
func DownFrom(err error) (Down, bool) {
	var d Down
	ok := errors.As(err, &d)
	return d, ok
}

// DownMessage is the message of the 503 answer to d.
func DownMessage(d Down) string {
	return d.Dependency() + " is unavailable (circuit breaker open); retry later"
}

// The machine-readable codes that more than one of the sample's APIs answer.
const (
	CodeMalformed   = "malformed"   // 400
	CodeNotFound    = "not_found"   // 404
	CodeConflict    = "conflict"    // 409
	CodeInternal    = "internal"    // 500
	CodeUnavailable = "unavailable" // 502/503: a backing service cannot be reached
)

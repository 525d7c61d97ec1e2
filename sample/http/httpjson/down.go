package httpjson

import "errors"

// Down is implemented by errors that know which dependency is down and when
// to try again: *breaker.OpenError does. Classify answers them 503 with that
// Retry-After and the dependency in the body; recognising them by this
// interface keeps the package free of the breaker's imports.
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

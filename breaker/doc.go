// Package breaker puts a circuit breaker around a remote dependency, so that
// while the dependency is down a call fails at once with an error that says
// when to try again, instead of every caller waiting out its timeout.
//
// A Breaker counts consecutive failed calls; after Config.Failures of them it
// opens and refuses calls for Config.OpenFor, returning an *OpenError
// (matching ErrOpen) that names the dependency and carries a Retry-After.
// Then it lets Config.Probes calls through (half-open): if they succeed it
// closes, if one fails it opens again. Every state change is one log line and
// moves the eventline_breaker_* metrics. The breaker itself is
// github.com/sony/gobreaker/v2.
//
// Errors that show the dependency answering — a version conflict, a missing
// stream, a Redis nil — must not open a breaker: Config.IsSuccessful says
// which. The adapters do that for eventline's own dependencies:
// package breaker/redisbreaker (a go-redis hook), breaker/storebreaker (an
// eventstore.Store wrapper) and breaker/pubbreaker (a watermill Publisher
// wrapper). A library user wraps any other call with Do, Call or Allow.
package breaker

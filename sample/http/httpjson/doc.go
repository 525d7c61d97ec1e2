// Package httpjson is the JSON over HTTP that every API of the sample shares:
// the error body {"error": "...", "code": "..."} and its codes, the mapping
// from errors to statuses (Classify, WriteError), the strict request decoder
// (Decode) and Mux, which answers unknown routes (404) and wrong methods (405
// with Allow) with the same body as every other error, and Metrics, the
// request metrics every API exports (eventline_http_*, by api and route).
//
// It imports only the standard library and the Prometheus client, so that
// the query API uses it without the command side. Each API brings its own table of Mappings: the command
// API maps the domain's and the command handler's errors, the query API
// Redis's.
//
// # What a client reads
//
// An error's Message is what the client sees; Err, the cause, goes to the
// logs. A Mapping with a Message answers that fixed text, so that a wrapped
// error's text, which names streams ("cart-…") and Go packages ("command:",
// "eventstore:"), never reaches a response; a Mapping without one answers the
// error's own text, for errors written for the client (the domain's rules).
// Every 5xx answers a generic text.
//
// Decode accepts only what an API documents: Content-Type application/json
// (415 otherwise), at most MaxBodyBytes (413), exactly one JSON object with
// known fields of the right types (400 otherwise, naming the field). It checks
// the shape of a request, not the domain's rules: a quantity of 0 decodes,
// and the cart refuses it (422).
package httpjson

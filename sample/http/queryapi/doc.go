// Package queryapi is the sample's query HTTP API. It reads the read models
// of sample/readmodel from Redis and nothing else: it imports neither the
// command side nor any event store backend (a test checks with go list), so a
// query service deploys and fails independently of the write path.
//
// # Endpoints
//
//	GET /carts/{id}            {"cart_id","customer_id","status","items":[{"product_id","quantity","unit_price_cents"}],
//	                            "total_cents","version","order_id"?}
//	GET /customers/{id}/carts  {"customer_id","carts":["<cart id>",...],"orders":["<order id>",...],
//	                            "registered","credit_limit_cents","reserved_cents"}
//	GET /orders/{id}           {"order_id","cart_id","customer_id","status","reason"?,"items":[...],
//	                            "total_cents","placed_at"}
//	GET /products/top?limit=N  {"products":[{"product_id","units"},...]}  N is 1..100, default 10
//
// Carts and orders of a customer are listed oldest first. A cart's status is
// "open" or "checked_out"; an order's "pending", "confirmed" or "rejected".
//
// # Read your writes
//
// Every endpoint accepts ?after=<position>, the token a command returned: the
// query then waits, at most Config.WaitTimeout (default 5 s), until the
// projection it reads has applied that position. Without after a query never
// waits and reads whatever the model holds. A position the model has already
// applied, the common case, costs nothing more than a query without after:
// the answer's read holds the checkpoint it is compared with.
//
// # Freshness
//
// Every answer carries the header Eventline-Position (HeaderPosition): the
// position of the read model's checkpoint, read in the same MULTI/EXEC as
// the answer, so the answer is the model exactly at that position (every
// event up to it, none after) at no extra round trip. A client compares it with
// the position a command returned to see whether the answer includes its
// write, or waits for that with ?after=.
//
// # Errors
//
// Errors are JSON {"error": "...", "code": "..."}, the body of package
// httpjson, with fixed messages that name no key or Go package:
//
//	400 malformed    an id that is not 1..128 bytes of [A-Za-z0-9._~-], a bad
//	                 limit, an after that is not a position token
//	404 not_found    no such cart, order or customer
//	503 not_ready    the projection has no active version yet (its first build
//	                 has not caught up with the log)
//	503 unavailable  Redis cannot be reached
//	504 timeout      the projection did not reach ?after= within WaitTimeout;
//	                 the model is up but behind (a 503 would suggest it is down)
//
// 503 and 504 carry Retry-After: 1. Through Handler (or httpjson.Mux), an
// unknown route is a 404 not_found and a wrong method a 405
// method_not_allowed with Allow, in the same body.
package queryapi

// Package commandapi is the sample's command HTTP API: the write side of the
// shopping cart. It decodes requests strictly (httpjson.Decode), hands commands to a
// command.Handler per kind of entity (carts and customers) over any
// eventstore.Store, and answers with the global position the command
// committed, so that a client can read its own write on the query side
// (?after=<position>).
//
// Endpoints (JSON in, JSON out):
//
//	POST   /carts                              {"customer_id","cart_id"?}      → 201 {"cart_id","position"}
//	POST   /carts/{id}/items                   {"product_id","quantity","unit_price_cents"} → 200 {"position"}
//	PUT    /carts/{id}/items/{product_id}      {"quantity"}                    → 200 {"position"}
//	DELETE /carts/{id}/items/{product_id}                                      → 200 {"position"}
//	POST   /carts/{id}/checkout                                                → 200 {"order_id","position"}
//	POST   /customers                          {"customer_id"?,"credit_limit_cents"} → 201 {"customer_id","position"}
//
// # Retrying safely
//
// An Idempotency-Key header (1 to MaxIdempotencyKeyLen printable characters)
// becomes the command id (command.WithID). The exact rule:
//
//   - A key is scoped to the entity the request addresses: the cart of the
//     URL, or the cart or customer a POST creates. The same key on another
//     cart is another command.
//   - A key is recorded with the events its command wrote, in the entity's
//     stream, for the stream's lifetime. The response then carries
//     Idempotency-Recorded: true, and every retry with the key on that entity
//     gets the first answer, status and body byte for byte, on any replica,
//     without writing again.
//   - The key reused on that entity for a different request (another
//     endpoint, body or product) is a 409 on every replica, and writes
//     nothing.
//   - A command that changed nothing (e.g. setting a quantity the cart
//     already has) wrote nothing, so nothing records its key: the 200 carries
//     Idempotency-Recorded: false, and a retry is decided again on the entity
//     as it is then. A refused request (4xx) records nothing either.
//
// Ids the server chooses are derived from the key rather than drawn at
// random, so that a retry lands on the same entity: POST /carts and POST
// /customers without an id, and the order id of a checkout, are UUIDv5s of
// the key. Without the header, the server draws fresh ids and a retry is a
// new request.
//
// An X-Correlation-ID header, when given, is the correlation id of every
// event the command writes (command.WithMetadata) and is echoed in the
// response.
//
// # Statuses
//
// 400 malformed request or id, 404 a cart or item that does not exist, 409 a
// cart or customer that exists already, an Idempotency-Key reused on the same
// entity for another request, or too many concurrent writes; 413 body too large, 415 not JSON,
// 422 a domain rule refused the command, 503 the event store is unreachable
// or closed (with Retry-After); 404 and 405 (with Allow) also answer unknown
// routes and wrong methods. Errors are {"error","code"} bodies of package
// httpjson, classified by ErrorMappings. A message names what the client got
// wrong in the client's words: never a stream name or a Go package; the log
// keeps the details.
package commandapi

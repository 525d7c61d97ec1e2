// Package schema describes the sample's read models as they are stored in
// Redis and served by the query API: the projection names, their schema
// versions, the key layout, the documents the API answers with (Cart, Order,
// Customer, ProductUnits) and typed readers over a query.View.
//
// It is the part of sample/readmodel that the query side needs, kept apart so
// that a query service imports neither the projection engine nor the domain
// packages (which depend on the command side): it imports only package query,
// the eventstore core and go-redis.
//
// Layout, after the prefix "{el:<projection>}:v<n>:" (query.Key), n being
// the projection's version (CartsVersion, ...):
//
//	carts      cart:<cart id>                 hash: customer_id, status, version, order_id (while checked out),
//	                                          and per product q:<id> quantity, p:<id> unit price,
//	                                          o:<id> stream version of its first addition
//	customers  customer:<id>:carts            sorted set: cart ids, scored by the position of cart.opened
//	           customer:<id>:orders           sorted set: order ids, scored by the position of cart.checked_out
//	           customer:<id>:credit           hash: credit_limit_cents, reserved_cents
//	products   units                          sorted set: product id → units in checked-out carts
//	           checkout:<cart id>             hash: product id → units of the cart's checkout, until it is reopened
//	orders     order:<order id>               hash: doc (Order as JSON, as placed), status, reason (when rejected)
//
// Every model is written without reading Redis (each event maps to blind
// HSET, HSETNX, HINCRBY, ZINCRBY... or, for the products model, a script run
// inside the batch's transaction); the readers assemble the documents, so
// ReadCart computes the items' order and the total as the cart's decider
// does.
//
// The readers take a View resolved by the caller (query.Resolve or
// query.WaitFor), so that one request reads one version even while a
// rebuild switches versions. Each reads its document and the build's
// checkpoint in one MULTI/EXEC and returns both: the position is exactly the
// one the document is at, since a runner writes a batch and its checkpoint in
// one transaction too.
package schema

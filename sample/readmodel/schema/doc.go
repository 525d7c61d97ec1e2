// Package schema describes the sample's read models as they are stored in
// Redis and served by the query API: the projection names, the schema
// Version, the key layout, the JSON documents (Cart, Order, Customer,
// ProductUnits) and typed readers over a query.View.
//
// It is the part of sample/readmodel that the query side needs, kept apart so
// that a query service imports neither the projection engine nor the domain
// packages (which depend on the command side): it imports only package query,
// the eventstore core and go-redis.
//
// Layout of schema Version 1, after the prefix "{el:<projection>}:v1:"
// (query.Key):
//
//	carts      cart:<cart id>                 string: Cart as JSON
//	customers  customer:<id>:carts            sorted set: cart ids, scored by the position of cart.opened
//	           customer:<id>:orders           sorted set: order ids, scored by the position of cart.checked_out
//	           customer:<id>:credit           hash: credit_limit_cents, reserved_cents
//	products   units                          sorted set: product id → units in checked-out carts
//	           order:<order id>               string: the order's lines as JSON, until its cart is reopened
//	orders     order:<order id>               string: Order as JSON
//
// The readers take a View resolved by the caller (query.Resolve or
// query.WaitFor), so that one request reads one version even while a
// rebuild switches versions.
package schema

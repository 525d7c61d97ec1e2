// Package readmodel holds the sample shopping cart's projections: the read
// models that the query API serves, kept up to date from the event log by a
// projection.Runner each. Projections returns them; the documents, the key
// layout and the readers are in package schema.
//
//   - carts: cart detail (customer, status, items in the order of their first
//     addition, total, stream version), one JSON document per cart.
//   - customers: a customer's carts and orders, oldest first, and their credit
//     limit and reserved credit once registered.
//   - products: the leaderboard of units sold.
//   - orders: order detail with its status, pending from the checkout, then
//     confirmed or rejected (with the reason) by the order saga's events.
//
// # Correctness under batching
//
// A runner applies a whole batch of records in one MULTI/EXEC, so a handler's
// read of Redis (projection.Tx.Read) does not see the writes of earlier
// records of the same batch. The JSON documents (carts, orders) are therefore
// read-modify-written through the batch memo (projection.Tx.Memo): the first
// record of a batch that touches a document reads it from Redis, later ones
// take the batch's own copy. The other models use Redis' atomic updates
// (ZADD NX, ZINCRBY, HINCRBY), which need no read at all.
//
// # What counts as sold
//
// The leaderboard counts the units of carts that are checked out: a checkout
// adds its lines' units, and the reopening of the cart, which the order saga
// sends when the order is rejected, takes them away again. Units of pending
// and confirmed orders count; units of rejected orders do not. The model is
// therefore a function of the carts' states alone, which the tests check
// against cart.Decider.Fold.
//
// # Streams
//
// Events that do not repeat their entity's id take it from the stream name:
// "cart-<id>", "order-<id>" and "customer-<id>", the names the sample's
// command handlers (and the saga's) use. An event in any other stream is an
// error matching ErrUnexpectedStream.
package readmodel

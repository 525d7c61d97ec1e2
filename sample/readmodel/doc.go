// Package readmodel holds the sample shopping cart's projections: the read
// models that the query API serves, kept up to date from the event log by a
// projection.Runner each. Projections returns them; the documents, the key
// layout and the readers are in package schema.
//
//   - carts: cart detail (customer, status, items in the order of their first
//     addition, total, stream version), one hash per cart.
//   - customers: a customer's carts and orders, oldest first, and their credit
//     limit and reserved credit once registered.
//   - products: the leaderboard of units sold.
//   - orders: order detail with its status, pending from the checkout, then
//     confirmed or rejected (with the reason) by the order saga's events.
//
// # Write-only, and correct under batching
//
// A runner applies a whole batch of records in one MULTI/EXEC, where a read
// of Redis (projection.Tx.Read) would not see the writes of earlier records
// of the same batch, and would cost a round trip per record. No projection
// here reads: each event becomes blind writes that compose in any batch.
//
//   - carts: a hash per cart. cart.item_added is HINCRBY of the product's
//     quantity, HSETNX of its price and of the version of its first addition
//     (a product already in the cart keeps both, as cart.Evolve keeps them);
//     a quantity change is HSET, a removal HDEL of the product's fields (so a
//     product added again goes last); checkout and reopening HSET the status.
//     Every event HSETs the stream version. schema.ReadCart orders the items
//     and computes the total.
//   - orders: a hash per order; the first of cart.checked_out and
//     order.placed HSETNXes the order as placed and its pending status, the
//     order's outcome HSETs status and reason.
//   - products: ZINCRBY of the checked-out units, and the lines kept in a
//     hash under the cart id; cart.reopened runs a short Lua script queued in
//     the batch's pipeline, so that it runs inside EXEC, after the batch's
//     earlier writes, and subtracts those lines without a read by the runner.
//     A script error inside EXEC would not roll the batch back, so the script
//     does nothing that can fail on data a well-formed log leaves.
//   - customers: ZADD NX and HINCRBY.
//
// The writes go through projection.Tx's helpers, which merge a batch's writes
// per key; the carts model deletes a cart's hash at cart.opened, its stream's
// first event, so that a cart whose events share a batch is one DEL and one
// HSET. Projections share one projection.SharedDecoding: a record is decoded
// once for the four models.
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

// Package saga is the sample's order/credit saga: it turns a checked-out cart
// into a confirmed order when the customer has the credit, and into a rejected
// order and a reopened cart (the compensation) when not. Orders, customers and
// carts are separate aggregates in separate streams; the saga crosses them only
// through events (delivered by watermill from relay.Relay) and commands (sent
// through command.Handler), never through a transaction spanning them.
//
// # Events and commands
//
//	event                      command(s) the saga sends, by the order's state
//	cart.checked_out           order Place(order, cart, customer, items, total), then
//	                           pending: customer ReserveCredit(order, total)
//	                           rejected: cart Reopen(order, reason)
//	customer.credit_reserved   pending: order Confirm
//	                           rejected: customer ReleaseCredit(order), cart Reopen
//	customer.credit_refused    pending: order Reject(reason), then cart Reopen(order, reason)
//	                           rejected: cart Reopen(order, reason)
//
// The customer answers ReserveCredit with an event either way, so refusal is a
// decision, not an error. A customer that cannot be asked — never registered,
// or a ReserveCredit the customer's rules refuse — ends the same way: the
// saga rejects the order (reason `unknown customer "ann"`, or "credit refused:
// ...") and reopens the cart while handling cart.checked_out.
//
// Every step decides from the order's current state, loaded from its stream,
// not from what this handling did so far: a redelivery after a handling that
// stopped half-way (a transient failure between two commands) finishes what
// is left. A rejected order is final: a later event about it finishes the
// compensation (cart reopened, a reservation for it released) and never asks
// for credit again, even if the customer registered since. A confirmed order
// needs nothing; only a pending one moves forward. The saga therefore always
// ends in one of two states: order confirmed, cart checked out, credit
// reserved once; or order rejected, cart open, no credit held.
//
// # Idempotence and failures
//
// Every command carries a command id "<triggering event id>/<step>"
// (command.WithID, steps StepPlace, StepReserve, ...), so handling an event
// again — a redelivery, a duplicate publish by the relay, or a retry after a
// crash between two steps — finds the step's events already written and
// writes nothing: credit is never reserved twice and an order never placed
// twice. The events carry the triggering event's id as causation id and its
// correlation id (command.CausedBy).
//
// Messages go through consume.NewRouter: de-duplication by event id
// (Config.Dedup: consume.RedisDedup across processes), then a poison queue, then
// retries with exponential back-off, then panic recovery. A message that fails
// every retry (malformed, or a store that stays down) is published to
// Config.PoisonTopic and acked. De-duplication only saves work; correctness
// comes from the idempotent commands, so a crash after a command but before
// the dedup mark is harmless.
//
// # Running
//
// New checks the Config; Run subscribes and handles messages until its context
// ends. With GoChannel, start the relay after Running is closed, since
// GoChannel drops messages published before anyone subscribed. Several saga
// processes can share a Redis Streams consumer group; use consume.RedisDedup
// then.
package saga

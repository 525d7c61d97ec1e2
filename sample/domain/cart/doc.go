// Package cart is the shopping cart of the sample application, written as a
// pure decider: Decider turns a Command and the cart's State into Events, and
// folds Events into State. It touches no store, clock or network; the
// command.Handler loads, decides and appends around it.
//
// A cart's id is its entity id (the stream "cart-<id>" under a command.Handler
// named "cart"), so no command or event repeats it: consumers of the events,
// such as the order saga, take it from the record's stream.
//
// # Rules
//
//   - A cart is opened once, for a customer; every other command on a cart
//     that was never opened fails with ErrCartNotOpen.
//   - A line's quantity is 1 to MaxQuantity; a cart has at most MaxLines lines;
//     a unit price is 1 to MaxUnitPriceCents cents; a product id is 1 to
//     MaxProductIDLen bytes of [A-Za-z0-9._~-].
//   - Adding a product that is already in the cart adds to that line's
//     quantity, which must stay within MaxQuantity; the unit price must be the
//     line's price (ErrPriceMismatch), so that units already in the cart are
//     never silently repriced. Change the quantity or remove the line instead.
//   - Setting a line to the quantity it already has decides no events.
//   - A checked-out cart refuses every change (ErrCheckedOut) except Reopen,
//     the compensation the order saga sends when the order is rejected: the cart
//     becomes open again with its items. Checking out an empty cart fails with
//     ErrEmptyCart. Checking out again with the order id of the current checkout
//     decides no events, so a retried checkout is harmless.
//   - Reopen for an order the cart was already reopened from decides no events,
//     so a redelivered compensation is harmless.
//
// The state's rules are checked before the command's arguments: adding a
// malformed item to a checked-out cart fails with ErrCheckedOut.
//
// # Errors
//
// Every refusal matches ErrRuleViolated and one specific sentinel
// (ErrCartNotOpen, ErrCheckedOut, ErrQuantityRange, ...) with errors.Is, and
// names the values that broke the rule.
package cart

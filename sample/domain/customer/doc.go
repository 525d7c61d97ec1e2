// Package customer is the customer of the sample application and their credit,
// written as a pure decider. The order/credit saga asks a customer to reserve
// credit for an order's total; the answer is an event either way:
// CreditReserved when the reservations stay within the credit limit,
// CreditRefused (with a reason) when they would not. A refusal is a decision
// the saga reacts to (it rejects the order and reopens the cart), not an
// error.
//
// A customer's id is their entity id (stream "customer-<id>" under a
// command.Handler named "customer"), so no command or event repeats it.
//
// ReserveCredit is idempotent per order: once an order's credit was reserved,
// refused or released, reserving for it again decides no events, so a
// redelivered saga message never reserves twice. ReleaseCredit returns a
// reservation's amount to the customer; releasing again, or releasing for an
// order whose credit was refused, decides no events.
//
// Refusals of malformed or misplaced commands match ErrRuleViolated.
package customer

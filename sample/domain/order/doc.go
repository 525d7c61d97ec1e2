// Package order is the order of the sample application, written as a pure
// decider. An order is placed from a checked-out cart and is then pending
// until the order/credit saga confirms it (the customer's credit was reserved)
// or rejects it (credit was refused), which ends it:
//
//	(none) ──Place──► pending ──Confirm──► confirmed
//	                     └──────Reject───► rejected
//
// An order's id is its entity id (stream "order-<id>" under a command.Handler
// named "order"); Place repeats it so that the Placed event is self-contained.
//
// Every other transition is refused with an error matching ErrRuleViolated.
// Repeating the command that reached the current status (the same Place, a
// second Confirm of a confirmed order, a second Reject of a rejected one)
// decides no events, so a saga message delivered twice is harmless.
package order

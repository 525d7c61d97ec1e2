// Package commandtest tests deciders the way domain experts describe rules:
// given these past events, when this command arrives, then these events are
// decided, or this error.
//
//	func TestWithdrawTooMuch(t *testing.T) {
//		commandtest.For(t, accountDecider).
//			Given(Opened{Owner: "ann"}, Deposited{Amount: 10}).
//			When(Withdraw{Amount: 11}).
//			ThenError(ErrInsufficientFunds)
//	}
//
// Scenarios are pure: they run the Decider's functions and touch no store. A
// failing scenario reports the given events, the command and a line diff of the
// wanted and decided events, one event per line as "%T%+v".
//
// Every scenario also checks that Decide did not mutate the state it was given
// (through a map, slice or pointer in the state), by comparing that state with a
// fresh fold of the given events after Decide returns.
package commandtest

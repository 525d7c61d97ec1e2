// Package commandtest tests command handling the way domain experts describe
// rules: given these past events, when this command arrives, then these
// events, or this error.
//
// [For] tests a [command.Decider] alone, purely (no store):
//
//	func TestWithdrawTooMuch(t *testing.T) {
//		commandtest.For(t, accountDecider).
//			Given(Opened{Owner: "ann"}, Deposited{Amount: 10}).
//			When(Withdraw{Amount: 11}).
//			ThenError(ErrInsufficientFunds)
//	}
//
// Every such scenario also checks that Decide did not mutate the state it was
// given (through a map, slice or pointer in the state), by comparing that
// state with a fresh fold of the given events after Decide returns.
//
// [ForHandler] tests a [command.Handler] over a real [eventstore.Store] (a
// fresh in-memory one unless [HandlerScenario.WithStore] gives another): the
// given events are encoded with the registry and appended, the Handler
// handles the command, and the events it appended are read back from the
// store and decoded:
//
//	func TestWithdraw(t *testing.T) {
//		commandtest.ForHandler(t, accountDecider, registry, command.Config{Name: "account"}).
//			Given("ann", Opened{Owner: "ann"}, Deposited{Amount: 10}).
//			When("ann", Withdraw{Amount: 4}).
//			ThenAppended(Withdrawn{Amount: 4})
//	}
//
// A failing scenario reports the given events, the command and a line diff
// ([Diff]) of the wanted and actual events, one event per line as "%T%+v".
package commandtest

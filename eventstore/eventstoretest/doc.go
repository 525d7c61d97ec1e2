// Package eventstoretest is the contract suite that every [eventstore.Store]
// backend must pass, in the way [golang.org/x/net/nettest] checks a [net.Conn].
//
// A backend runs it ([Run]) from its own tests:
//
//	func TestContract(t *testing.T) {
//		eventstoretest.Run(t, func(t *testing.T) eventstore.Store {
//			s := mybackend.New(...)
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The suite checks expected-version rules, 64 goroutines racing exact-version
// appends on one stream, global order under concurrent writers, subscriptions
// started before, during and after concurrent appends, idempotent re-appends
// ([eventstore.AppendResult].Repeated, and a repeat carrying other data keeps the stored
// events),
// reads from a position or version, large and empty payloads, metadata,
// invalid input, cancellation without leaked goroutines, and Close.
//
// The suite does not assume that a record reaches subscribers before Append
// returns (a durable backend may batch appends), only that once Append has
// returned the record is visible to ReadAll, ReadStream and Head. It never
// sleeps to synchronize and never asserts on timings; a hang fails the test
// when a per-test deadline passes.
package eventstoretest

// Package projectiontest checks a [projection.Projection] the way a good
// projection spec does: given records, it applies them to a real Redis and
// compares the resulting read model, key by key, with the model a [Case]
// wants, printing a readable difference when they differ.
//
// Every case is applied several times, each into a fresh build of its own:
// in batches of one record, of two, and of all of them ([BatchSizes]), and
// each time once and then a second time over the result. A projection whose
// model depends on how the runner batches records, or that cannot take a
// record twice, fails the check:
//
//	func TestCarts(t *testing.T) {
//		rdb := projectiontest.Miniredis(t) // or a client of a real redis-server
//		projectiontest.Run(t, rdb, readmodel.CartsProjection(reg), projectiontest.Case{
//			Name: "an item added to an open cart",
//			Records: []eventstore.Record{
//				{StreamID: "cart-1", Event: opened},
//				{StreamID: "cart-1", Event: itemAdded},
//			},
//			Want: projectiontest.Model{"cart:1": map[string]string{"status": "open", ...}},
//		})
//	}
//
// The batches are applied as a [projection.Runner] applies them, through
// [projection.Tx] (Memo, the write helpers, one MULTI/EXEC with the
// checkpoint), but without a lease: point the check at a Redis, or a
// database, that no runner of the projection writes to.
package projectiontest

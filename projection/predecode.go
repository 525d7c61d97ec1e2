package projection

import (
	"context"
	"iter"

	"github.com/eventline/eventline/eventstore"
)

// predecoder is a Projection that can do part of Apply's work for a record
// ahead of Apply: a Router's decoding of the event (Router.Projection).
//
// The runner reads the log ahead of the batch it applies (internal/batch);
// the records it reads ahead are decoded there, on that goroutine, while the
// runner's own goroutine applies the batch before them and waits for its
// EXEC. On two cores the JSON decoding then overlaps the Redis round trip
// instead of adding to it. Decoding is pure, so doing it early changes
// nothing of what Apply writes, of the lease checks or of the checkpoint.
type predecoder interface {
	predecode(rec eventstore.Record)
}

// predecoding returns subscribe with every record that Apply will be given
// (mine: the runner's Runner.mine, its types and its partition) decoded by p
// as it is read, before it is handed on.
func predecoding(subscribe func(context.Context) iter.Seq2[eventstore.Record, error], p predecoder,
	mine func(*eventstore.Record) bool) func(context.Context) iter.Seq2[eventstore.Record, error] {
	return func(ctx context.Context) iter.Seq2[eventstore.Record, error] {
		return func(yield func(eventstore.Record, error) bool) {
			for rec, err := range subscribe(ctx) {
				if err == nil && mine(&rec) {
					p.predecode(rec)
				}
				if !yield(rec, err) {
					return
				}
			}
		}
	}
}

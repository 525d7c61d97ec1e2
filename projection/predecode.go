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

// Wrapper is implemented by a Projection made from another one that it
// applies records with: Partitioned's, or a deployment's wrapper that
// changes the version of a model. Unwrap returns the projection it wraps.
// The runner looks through wrappers for what the wrapped projection does
// beyond Projection's methods (a Router's decoding ahead of Apply), which
// embedding a Projection in a struct would otherwise hide.
type Wrapper interface {
	Unwrap() Projection
}

// maxUnwrap bounds how many wrappers predecoderOf looks through, so that a
// wrapper that returns itself cannot loop.
const maxUnwrap = 16

// predecoderOf returns the predecoder of p or of the projection it wraps
// (Wrapper), if any. Decoding ahead for a wrapped projection is safe even if
// the wrapper's Apply does not call the wrapped one's: decoding is pure, and
// what is decoded ahead is kept in a bounded cache.
func predecoderOf(p Projection) (predecoder, bool) {
	for range maxUnwrap {
		if d, ok := p.(predecoder); ok {
			return d, true
		}
		w, ok := p.(Wrapper)
		if !ok {
			return nil, false
		}
		if p = w.Unwrap(); p == nil {
			return nil, false
		}
	}
	return nil, false
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

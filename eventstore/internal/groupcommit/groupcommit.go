// Package groupcommit is the protocol between the callers of Append and the
// single writer goroutine of an event store that commits concurrent appends
// together in one transaction (a group commit).
//
// A caller queues its request unless the store is closed or its context ends,
// then waits for the writer's reply. A caller whose context ends while its
// request is still queued abandons it; the writer skips abandoned requests
// when it gathers a batch. Exactly one of the two wins each request, so an
// abandoned append is never written and a taken one is always answered.
//
// What a store writes and how long its writer waits for more appends stay in
// the store: this package only moves requests and replies.
package groupcommit

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/eventline/eventline/eventstore"
)

// States of a Request: the writer takes a queued request, or the caller
// abandons it when its context ends first.
const (
	queued int32 = iota
	taken
	abandoned
)

// Request is the part of an append request that the protocol owns. A store
// embeds a *Request (from NewRequest) in its own request type.
type Request struct {
	state atomic.Int32
	reply chan reply // buffered: the writer never blocks on it
}

type reply struct {
	res eventstore.AppendResult
	err error
}

// NewRequest returns a queued request, ready to be answered once.
func NewRequest() *Request {
	return &Request{reply: make(chan reply, 1)}
}

// Take claims the request for the writer. It reports false when the caller
// abandoned it; the writer then drops it without answering.
func (r *Request) Take() bool {
	return r.state.CompareAndSwap(queued, taken)
}

// Answer gives the caller its outcome. Only the writer calls it, once, after
// Take returned true.
func (r *Request) Answer(res eventstore.AppendResult, err error) {
	r.reply <- reply{res, err}
}

// Wait blocks until the request is answered and returns the answer.
func (r *Request) Wait() (eventstore.AppendResult, error) {
	a := <-r.reply
	return a.res, a.err
}

// Queued is a store's request type: a pointer to a struct that embeds a
// *Request.
type Queued interface {
	request() *Request
}

func (r *Request) request() *Request { return r }

// Submit queues req on requests and returns the writer's answer. done is
// closed when the store closes; stopped when the writer has exited, after it
// answered every request it took.
//
// When ctx ends before the writer took req, Submit returns ctx's error and req
// is never written. Once the writer has taken it, Submit waits for its answer
// whatever ctx does. A closed store gives eventstore.ErrClosed.
func Submit[R Queued](ctx context.Context, requests chan<- R, req R, done, stopped <-chan struct{}) (eventstore.AppendResult, error) {
	select {
	case requests <- req:
	case <-done:
		return eventstore.AppendResult{}, eventstore.ErrClosed
	case <-ctx.Done():
		return eventstore.AppendResult{}, ctx.Err()
	}
	r := req.request()
	select {
	case a := <-r.reply:
		return a.res, a.err
	case <-stopped:
		// The writer answers before it stops; no answer means it never took req.
		select {
		case a := <-r.reply:
			return a.res, a.err
		default:
			return eventstore.AppendResult{}, eventstore.ErrClosed
		}
	case <-ctx.Done():
		if r.state.CompareAndSwap(queued, abandoned) {
			return eventstore.AppendResult{}, ctx.Err()
		}
		return r.Wait()
	}
}

// Gather makes a batch for the writer: it takes first, then every request
// queued behind it, then, while more reports that more are on their way,
// those arriving within wait. It stops as soon as full reports the batch
// full. add puts a request the writer took into the batch; requests their
// callers abandoned are dropped. timer is the writer's stopped timer, reused
// across batches; Gather leaves it stopped.
//
// wake, when not nil, makes Gather ask more again while it waits: a writer
// whose answer to more changes for a reason other than a new request (an
// fsync finished) signals it there.
func Gather[R Queued](requests <-chan R, first R, add func(R), full, more func() bool, wait time.Duration, timer *time.Timer, wake <-chan struct{}) {
	take := func(req R) {
		if req.request().Take() {
			add(req)
		}
	}
	take(first)
drain:
	for !full() {
		select {
		case req := <-requests:
			take(req)
		default:
			break drain
		}
	}
	if wait <= 0 || full() || !more() {
		return
	}
	timer.Reset(wait)
	defer timer.Stop()
	for more() && !full() {
		select {
		case req := <-requests:
			take(req)
		case <-wake:
		case <-timer.C:
			return
		}
	}
}

// FailQueued answers eventstore.ErrClosed to every request still queued,
// once the writer stopped taking them.
func FailQueued[R Queued](requests <-chan R) {
	for {
		select {
		case req := <-requests:
			if r := req.request(); r.Take() {
				r.Answer(eventstore.AppendResult{}, eventstore.ErrClosed)
			}
		default:
			return
		}
	}
}

// Serve is the writer goroutine's loop: for each request it receives it calls
// batch with it and a stopped timer for Gather, reused across batches. When
// done is closed it answers eventstore.ErrClosed to the requests still
// queued and closes stopped, after which no request is answered.
func Serve[R Queued](requests <-chan R, done <-chan struct{}, stopped chan<- struct{}, batch func(first R, timer *time.Timer)) {
	defer close(stopped)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-done:
			FailQueued(requests)
			return
		case req := <-requests:
			batch(req, timer)
		}
	}
}

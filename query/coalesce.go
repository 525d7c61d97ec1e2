package query

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// ErrCoalescerClosed is returned by the reads of a closed Coalescer.
var ErrCoalescerClosed = errors.New("query: coalescer closed")

// maxCoalesced bounds the read transactions one MULTI/EXEC holds.
const maxCoalesced = 256

// Coalescer gathers the read transactions of concurrent queries into shared
// ones: a query's TxPipelined is queued, and one goroutine sends every
// transaction queued at that moment as a single MULTI/EXEC, in one write and
// one read on one connection, instead of a round trip each. Under load the
// queries of a busy process then cost Redis and the process a fraction of
// the system calls; a lone query waits for nothing (its transaction is sent
// as soon as the goroutine is free).
//
// Each query's reads stay atomic: the shared transaction is, so a query that
// reads a model and its checkpoint in one transaction still reads them at
// one moment. Every query gets its own commands' results and the first error
// among them, as TxPipelined does.
//
// On Redis Cluster a transaction cannot span hash slots (go-redis refuses it
// with CROSSSLOT), and concurrent queries read models and partitions in many
// slots, so a Coalescer over a *redis.ClusterClient sends each query's
// transaction by itself, as the client would.
//
// A Coalescer is safe for concurrent use; Close stops its goroutine. The
// client belongs to the caller.
type Coalescer struct {
	rdb    redis.UniversalClient
	alone  bool // a cluster client: each transaction is sent by itself
	reqs   chan *txRequest
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// States of a txRequest: the goroutine takes a queued request, or its caller
// abandons it when its context ends first.
const (
	txQueued int32 = iota
	txTaken
	txAbandoned
)

type txRequest struct {
	fn    func(redis.Pipeliner) error
	state atomic.Int32
	cmds  []redis.Cmder
	err   error
	done  chan struct{}
}

// NewCoalescer returns a Coalescer sending its transactions through rdb.
func NewCoalescer(rdb redis.UniversalClient) *Coalescer {
	ctx, cancel := context.WithCancel(context.Background())
	_, alone := rdb.(*redis.ClusterClient)
	c := &Coalescer{rdb: rdb, alone: alone, reqs: make(chan *txRequest, maxCoalesced), ctx: ctx, cancel: cancel, done: make(chan struct{})}
	go c.run()
	return c
}

// Client returns a redis.Cmdable that runs every command on the Coalescer's
// client, except TxPipelined, which it coalesces. Hand it to readers that
// read in transactions (sample/readmodel/schema's, for one).
func (c *Coalescer) Client() redis.Cmdable { return coalesced{Cmdable: c.rdb, c: c} }

// Close stops the Coalescer; transactions still queued get
// ErrCoalescerClosed. It returns nil.
func (c *Coalescer) Close() error {
	c.once.Do(func() {
		c.cancel()
		<-c.done
	})
	return nil
}

// coalesced is the Cmdable of Coalescer.Client.
type coalesced struct {
	redis.Cmdable
	c *Coalescer
}

// TxPipelined queues fn's commands for the next shared MULTI/EXEC and
// returns them, run, with the first of their errors.
func (x coalesced) TxPipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error) {
	return x.c.txPipelined(ctx, fn)
}

func (c *Coalescer) txPipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error) {
	if c.ctx.Err() != nil {
		return nil, ErrCoalescerClosed
	}
	if c.alone {
		return c.rdb.TxPipelined(ctx, fn)
	}
	r := &txRequest{fn: fn, done: make(chan struct{})}
	select {
	case c.reqs <- r:
	case <-c.ctx.Done():
		return nil, ErrCoalescerClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-r.done:
		return r.cmds, r.err
	case <-c.done:
		// Stopped: it answered what it took, and nobody takes r now.
		if r.state.CompareAndSwap(txQueued, txAbandoned) {
			return nil, ErrCoalescerClosed
		}
		<-r.done
		return r.cmds, r.err
	case <-ctx.Done():
		if r.state.CompareAndSwap(txQueued, txAbandoned) {
			return nil, ctx.Err()
		}
		<-r.done // taken: it is being sent, and is answered whatever happens
		return r.cmds, r.err
	}
}

// run sends the queued transactions until Close.
func (c *Coalescer) run() {
	defer close(c.done)
	batch := make([]*txRequest, 0, maxCoalesced)
	for {
		select {
		case <-c.ctx.Done():
			c.failQueued()
			return
		case r := <-c.reqs:
			batch = append(batch[:0], r)
		}
	drain:
		for len(batch) < maxCoalesced {
			select {
			case r := <-c.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		c.send(batch)
		clear(batch)
	}
}

// send runs the batch's transactions as one MULTI/EXEC and answers each.
func (c *Coalescer) send(batch []*txRequest) {
	taken := batch[:0]
	for _, r := range batch {
		if r.state.CompareAndSwap(txQueued, txTaken) {
			taken = append(taken, r)
		}
	}
	if len(taken) == 0 {
		return
	}
	// ends[i] is where request i's commands end in the pipeline.
	ends := make([]int, len(taken))
	fnErrs := make([]error, len(taken))
	cmds, err := c.rdb.TxPipelined(c.ctx, func(p redis.Pipeliner) error {
		for i, r := range taken {
			if ferr := r.fn(p); ferr != nil {
				// As TxPipelined does for a failing fn: nothing of it is
				// sent. Commands it queued before failing are sent but not
				// reported.
				fnErrs[i] = ferr
			}
			ends[i] = p.Len()
		}
		return nil
	})
	// Whether err is one command's reply (which firstErr gives the query
	// that sent it) rather than the transaction's own failure.
	replyErr := err != nil && isReplyErr(cmds, err)
	start := 0
	for i, r := range taken {
		end := ends[i]
		switch {
		case fnErrs[i] != nil:
			r.err = fnErrs[i]
		case end > len(cmds):
			// The pipeline failed before it returned its commands.
			r.err = cmpErr(err, fmt.Errorf("%w: shared transaction returned no results", ErrCoalescerClosed))
		default:
			r.cmds = cmds[start:end:end]
			r.err = firstErr(r.cmds)
			if r.err == nil && err != nil && !replyErr {
				// A failure of the transaction itself (the connection),
				// not one command's reply: every query shares it.
				r.err = err
			}
		}
		start = end
		close(r.done)
	}
}

// firstErr returns the first error among cmds, as TxPipelined does.
func firstErr(cmds []redis.Cmder) error {
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			return err
		}
	}
	return nil
}

// isReplyErr reports whether err is one of the commands' own errors (a
// reply such as redis.Nil), which only that command's query sees.
func isReplyErr(cmds []redis.Cmder, err error) bool {
	for _, cmd := range cmds {
		if cmd.Err() == err {
			return true
		}
	}
	return false
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// failQueued answers ErrCoalescerClosed to the transactions still queued.
func (c *Coalescer) failQueued() {
	for {
		select {
		case r := <-c.reqs:
			if r.state.CompareAndSwap(txQueued, txTaken) {
				r.err = ErrCoalescerClosed
				close(r.done)
			}
		default:
			return
		}
	}
}

package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/google/uuid"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/postgres"
)

// historyArgs configure a child that records a history of appends and reads.
type historyArgs struct {
	Schema     string `json:"schema"`
	Process    int    `json:"process"`
	Goroutines int    `json:"goroutines"`
	Ops        int    `json:"ops"`
	Streams    int    `json:"streams"`
}

// historyOp is one operation as a child saw it. Call and Return are wall
// clock nanoseconds, comparable across the processes of one host.
type historyOp struct {
	Client   int    `json:"c"`
	Stream   string `json:"s"`
	Read     bool   `json:"r,omitempty"`
	Expected uint64 `json:"x,omitempty"`
	ID       string `json:"id,omitempty"`
	// OK: the append was written; IDs: the stream's ids a read returned.
	OK     bool   `json:"ok,omitempty"`
	IDs    string `json:"ids,omitempty"`
	Call   int64  `json:"call"`
	Return int64  `json:"ret"`
	Err    string `json:"err,omitempty"`
}

func runHistory(url string, a historyArgs) []historyOp {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := postgres.Open(ctx, postgres.Config{URL: url, Schema: a.Schema})
	if err != nil {
		return []historyOp{{Err: err.Error()}}
	}
	defer s.Close()
	var mu sync.Mutex
	var ops []historyOp
	var wg sync.WaitGroup
	for g := range a.Goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(a.Process), uint64(g)))
			client := a.Process*a.Goroutines + g
			known := map[string]uint64{} // the version this client last saw
			for range a.Ops {
				op := historyOp{Client: client, Stream: fmt.Sprintf("h%d", rng.IntN(a.Streams))}
				op.Call = time.Now().UnixNano()
				if op.Read = rng.IntN(3) == 0; op.Read {
					var ids []string
					for rec, err := range s.ReadStream(ctx, op.Stream, 1) {
						if errors.Is(err, eventstore.ErrStreamNotFound) {
							break
						}
						if err != nil {
							op.Err = err.Error()
							break
						}
						ids = append(ids, rec.ID.String())
					}
					op.IDs = strings.Join(ids, ",")
					known[op.Stream] = uint64(len(ids))
				} else {
					id := uuid.New()
					op.Expected, op.ID = known[op.Stream], id.String()
					res, err := s.Append(ctx, op.Stream, eventstore.Exact(op.Expected), eventstore.Event{ID: id, Type: "h"})
					var wv *eventstore.WrongVersionError
					switch {
					case err == nil:
						op.OK = true
						known[op.Stream] = res.LastVersion
					case errors.As(err, &wv):
						known[op.Stream] = wv.Actual
					default:
						op.Err = err.Error()
					}
				}
				op.Return = time.Now().UnixNano()
				mu.Lock()
				ops = append(ops, op)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return ops
}

// streamModel is a stream as a sequence of event ids (joined by ','):
// an append with the right expected version adds its id, one with another
// fails, a read returns the ids.
var streamModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, op := range history {
			s := op.Input.(historyOp).Stream
			by[s] = append(by[s], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range by {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		ids, op := state.(string), input.(historyOp)
		if op.Read {
			return output.(historyOp).IDs == ids, ids
		}
		version := uint64(0)
		if ids != "" {
			version = uint64(strings.Count(ids, ",") + 1)
		}
		if op.Expected != version {
			return !output.(historyOp).OK, ids
		}
		if !output.(historyOp).OK {
			return false, ids
		}
		if ids == "" {
			return true, op.ID
		}
		return true, ids + "," + op.ID
	},
	DescribeOperation: func(input, output any) string {
		op := output.(historyOp)
		if op.Read {
			return fmt.Sprintf("read %s -> %d ids", op.Stream, strings.Count(op.IDs, ",")+1)
		}
		return fmt.Sprintf("append %s @%d -> %v", op.Stream, op.Expected, op.OK)
	},
}

// TestLinearizablePerStream records concurrent appends (with exact expected
// versions) and reads of 3 processes on 4 streams, and checks with porcupine
// that each stream's history is linearizable.
func TestLinearizablePerStream(t *testing.T) {
	db := testDB(t)
	const schema = "history"
	openStore(t, db, postgres.Config{Schema: schema})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var children []*childProc
	for p := range 3 {
		c, err := startChild(ctx, "history", db, historyArgs{Schema: schema, Process: p, Goroutines: 4, Ops: 40, Streams: 4})
		if err != nil {
			t.Fatal(err)
		}
		children = append(children, c)
	}
	var history []porcupine.Operation
	written := 0
	for p, c := range children {
		var ops []historyOp
		if err := c.wait(&ops); err != nil {
			t.Fatalf("process %d: %v", p, err)
		}
		for _, op := range ops {
			if op.Err != "" {
				t.Fatalf("process %d: %s", p, op.Err)
			}
			if op.OK {
				written++
			}
			history = append(history, porcupine.Operation{ClientId: op.Client, Input: op, Call: op.Call, Output: op, Return: op.Return})
		}
	}
	if written == 0 {
		t.Fatal("no append succeeded; the history checks nothing")
	}
	res := porcupine.CheckOperationsTimeout(streamModel, history, time.Minute)
	if res != porcupine.Ok {
		t.Fatalf("the history of %d operations (%d appends written) is not linearizable per stream: %v", len(history), written, res)
	}
	t.Logf("%d operations, %d appends written: linearizable per stream", len(history), written)
}

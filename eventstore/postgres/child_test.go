package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/postgres"
)

// The multi-process tests run this test binary again as children: the
// environment variable envChild names the child's role, the others its
// parameters. A child prints one JSON report on stdout.
const (
	envChild    = "EVENTLINE_PG_CHILD"
	envChildURL = "EVENTLINE_PG_CHILD_URL"
	envChildArg = "EVENTLINE_PG_CHILD_ARG"
)

// writerArgs configure a writer child.
type writerArgs struct {
	Schema     string `json:"schema"`
	Process    int    `json:"process"`
	Goroutines int    `json:"goroutines"`
	Appends    int    `json:"appends"`
	// HoldEvery holds one batch in HoldEvery open before its COMMIT, for up
	// to HoldMax, while the other processes commit.
	HoldEvery int           `json:"hold_every"`
	HoldMax   time.Duration `json:"hold_max"`
}

// writerReport lists what a writer child's appends were acknowledged with.
type writerReport struct {
	Acked []ackedAppend `json:"acked"`
	Err   string        `json:"err,omitempty"`
}

type ackedAppend struct {
	Stream   string      `json:"stream"`
	IDs      []uuid.UUID `json:"ids"`
	First    uint64      `json:"first"`
	Position uint64      `json:"position"`
}

// subscriberArgs configure a subscriber child.
type subscriberArgs struct {
	Schema   string `json:"schema"`
	Expected int    `json:"expected"`
	PageSize int    `json:"page_size"`
	// Timeout bounds the wait for the expected events.
	Timeout time.Duration `json:"timeout"`
}

// subscriberReport is what a subscriber child saw, in order.
type subscriberReport struct {
	Records []seenRecord `json:"records"`
	Err     string       `json:"err,omitempty"`
}

type seenRecord struct {
	Position uint64    `json:"p"`
	ID       uuid.UUID `json:"id"`
	Stream   string    `json:"s"`
	Version  uint64    `json:"v"`
}

func runChild(role string) int {
	var report any
	var err error
	switch role {
	case "writer":
		var a writerArgs
		if err = json.Unmarshal([]byte(os.Getenv(envChildArg)), &a); err == nil {
			report = runWriter(os.Getenv(envChildURL), a)
		}
	case "subscriber":
		var a subscriberArgs
		if err = json.Unmarshal([]byte(os.Getenv(envChildArg)), &a); err == nil {
			report = runSubscriber(os.Getenv(envChildURL), a)
		}
	case "history":
		var a historyArgs
		if err = json.Unmarshal([]byte(os.Getenv(envChildArg)), &a); err == nil {
			report = runHistory(os.Getenv(envChildURL), a)
		}
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	if err := json.NewEncoder(os.Stdout).Encode(report); err != nil {
		return 2
	}
	return 0
}

func runWriter(url string, a writerArgs) writerReport {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := postgres.Open(ctx, postgres.Config{URL: url, Schema: a.Schema})
	if err != nil {
		return writerReport{Err: err.Error()}
	}
	defer s.Close()
	if a.HoldEvery > 0 {
		var mu sync.Mutex
		r := rand.New(rand.NewPCG(uint64(a.Process), 1))
		postgres.SetBeforeCommit(s, func() {
			mu.Lock()
			hold := r.IntN(a.HoldEvery) == 0
			d := time.Duration(r.Int64N(int64(a.HoldMax)))
			mu.Unlock()
			if hold {
				time.Sleep(d) // fault injection: a transaction held open
			}
		})
	}
	var mu sync.Mutex
	var report writerReport
	var wg sync.WaitGroup
	for g := range a.Goroutines {
		wg.Go(func() {
			stream := fmt.Sprintf("p%d-g%d", a.Process, g)
			version := uint64(0)
			for k := range a.Appends {
				n := 1 + k%3
				events := make([]eventstore.Event, n)
				ids := make([]uuid.UUID, n)
				for i := range events {
					ids[i] = uuid.New()
					events[i] = eventstore.Event{ID: ids[i], Type: "written",
						Data: fmt.Appendf(nil, `{"process":%d,"goroutine":%d,"append":%d}`, a.Process, g, k)}
				}
				res, err := s.Append(ctx, stream, eventstore.Exact(version), events...)
				mu.Lock()
				if err != nil {
					if report.Err == "" {
						report.Err = fmt.Sprintf("stream %s append %d: %v", stream, k, err)
					}
					mu.Unlock()
					return
				}
				report.Acked = append(report.Acked, ackedAppend{Stream: stream, IDs: ids, First: res.FirstVersion,
					Position: res.Position.Commit})
				mu.Unlock()
				version = res.LastVersion
			}
		})
	}
	wg.Wait()
	return report
}

func runSubscriber(url string, a subscriberArgs) subscriberReport {
	ctx, cancel := context.WithTimeout(context.Background(), a.Timeout)
	defer cancel()
	s, err := postgres.Open(ctx, postgres.Config{URL: url, Schema: a.Schema, PageSize: a.PageSize})
	if err != nil {
		return subscriberReport{Err: err.Error()}
	}
	defer s.Close()
	var report subscriberReport
	for rec, err := range s.Subscribe(ctx, eventstore.Start) {
		if err != nil {
			report.Err = err.Error()
			break
		}
		report.Records = append(report.Records, seenRecord{Position: rec.Position.Commit, ID: rec.ID,
			Stream: rec.StreamID, Version: rec.Version})
		if len(report.Records) == a.Expected {
			break
		}
	}
	return report
}

// startChild starts this test binary as a child with role and args.
func startChild(ctx context.Context, role, url string, args any) (*childProc, error) {
	arg, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	cmd := execCommand(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+role, envChildURL+"="+url, envChildArg+"="+string(arg))
	p := &childProc{cmd: cmd}
	cmd.Stdout, cmd.Stderr = &p.stdout, &p.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return p, nil
}

// wait waits for the child to exit and decodes its report into v.
func (p *childProc) wait(v any) error {
	if err := p.cmd.Wait(); err != nil {
		return fmt.Errorf("%s: %w; stderr: %s", p.cmd.Env[len(p.cmd.Env)-3], err, p.stderr.String())
	}
	if err := json.Unmarshal(p.stdout.Bytes(), v); err != nil {
		return fmt.Errorf("report %q: %w; stderr: %s", p.stdout.String(), err, p.stderr.String())
	}
	return nil
}

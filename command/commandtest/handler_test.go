package commandtest_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/command/commandtest"
	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/memory"
)

func counterRegistry() *eventstore.Registry {
	reg := eventstore.NewRegistry()
	eventstore.Register[incremented](reg, "counter.incremented")
	return reg
}

func forCounter(tb testing.TB) *commandtest.HandlerScenario[counter, increment, incremented] {
	return commandtest.ForHandler(tb, counterDecider(false), counterRegistry(), command.Config{Name: "counter"})
}

func TestHandlerPassingScenarios(t *testing.T) {
	res := forCounter(t).When("a", increment{By: 3}).ThenAppended(incremented{By: 3})
	if res.StreamID != "counter-a" || res.Version != 1 {
		t.Errorf("Result = %+v, want stream counter-a at version 1", res)
	}
	forCounter(t).Given("a", incremented{By: 4}, incremented{By: 5}).When("a", increment{By: 1}).ThenAppended(incremented{By: 1})
	forCounter(t).Given("a", incremented{By: 9}).When("a", increment{By: 2}).ThenError(errLimit)
	forCounter(t).Given("a", incremented{By: 9}).When("a", increment{By: 2}).ThenError(command.ErrRejected)
	forCounter(t).Given("a", incremented{By: 9}).When("a", increment{By: 0}).ThenAppended()
	// Another entity's events do not count towards this one's limit.
	forCounter(t).Given("b", incremented{By: 10}).When("a", increment{By: 10}).ThenAppended(incremented{By: 10})
	forCounter(t).When("not an id!", increment{By: 1}).ThenError(command.ErrInvalidID)
}

func TestHandlerScenarioWithStoreAndContext(t *testing.T) {
	store := memory.New()
	defer store.Close()
	ctx := command.WithID(context.Background(), "req-1")
	forCounter(t).WithStore(store).Context(ctx).Given("a", incremented{By: 1}).When("a", increment{By: 2}).ThenAppended(incremented{By: 2})
	var n int
	for _, err := range store.ReadAll(context.Background(), eventstore.Start) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("the given store holds %d events, want the given one and the appended one", n)
	}
	// The same command id again: the Handler answers from the store and
	// appends nothing.
	res := forCounter(t).WithStore(store).Context(ctx).When("a", increment{By: 2}).ThenAppended()
	if len(res.Events) != 1 || res.Events[0] != (incremented{By: 2}) {
		t.Fatalf("repeated command's Result.Events = %v, want the stored [{2}]", res.Events)
	}
}

func TestHandlerFailureMessages(t *testing.T) {
	tests := []struct {
		name string
		run  func(tb testing.TB)
		want []string // substrings of the one failure message
	}{
		{
			name: "other events",
			run: func(tb testing.TB) {
				forCounter(tb).Given("a", incremented{By: 1}).When("a", increment{By: 2}).ThenAppended(incremented{By: 5})
			},
			want: []string{
				"given:\n  entity \"a\":\n    commandtest_test.incremented{By:1}\n",
				"when (entity \"a\"):\n    commandtest_test.increment{By:2 Tag:}\n",
				"appended events differ (-want +got):\n",
				"- commandtest_test.incremented{By:5}\n+ commandtest_test.incremented{By:2}\n",
			},
		},
		{
			name: "error instead of events",
			run: func(tb testing.TB) {
				forCounter(tb).Given("a", incremented{By: 10}).When("a", increment{By: 1}).ThenAppended(incremented{By: 1})
			},
			want: []string{"Handle returned error: ", "limit reached: 10+1", "want:\n    commandtest_test.incremented{By:1}"},
		},
		{
			name: "events instead of error",
			run: func(tb testing.TB) {
				forCounter(tb).When("a", increment{By: 1}).ThenError(errLimit)
			},
			want: []string{"given:\n    (no events)\n", "want error limit reached, Handle accepted the command and appended:\n    commandtest_test.incremented{By:1}"},
		},
		{
			name: "other error",
			run: func(tb testing.TB) {
				forCounter(tb).Given("a", incremented{By: 10}).When("a", increment{By: 1}).ThenError(errors.New("other"))
			},
			want: []string{"want error matching other, got ", "limit reached: 10+1"},
		},
		{
			name: "no command",
			run: func(tb testing.TB) {
				forCounter(tb).Given("a", incremented{By: 1}).ThenAppended()
			},
			want: []string{"call When before Then"},
		},
		{
			name: "bad config",
			run: func(tb testing.TB) {
				commandtest.ForHandler(tb, counterDecider(false), counterRegistry(), command.Config{}).When("a", increment{By: 1}).ThenAppended()
			},
			want: []string{"commandtest: NewHandler: ", "invalid config"},
		},
		{
			name: "unregistered event",
			run: func(tb testing.TB) {
				commandtest.ForHandler(tb, counterDecider(false), eventstore.NewRegistry(), command.Config{Name: "counter"}).
					Given("a", incremented{By: 1}).When("a", increment{By: 1}).ThenAppended()
			},
			want: []string{"commandtest: Given(\"a\"): encode commandtest_test.incremented"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{TB: t}
			tt.run(r)
			if len(r.failures) != 1 {
				t.Fatalf("want 1 failure, got %d: %q", len(r.failures), r.failures)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.failures[0], w) {
					t.Errorf("failure message lacks %q:\n%s", w, r.failures[0])
				}
			}
		})
	}
}

package commandtest_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/command/commandtest"
)

// A counter that may not exceed its limit.

type counter struct {
	N    int
	Seen map[string]bool // to let a buggy Decide mutate the state
}

type increment struct {
	By  int
	Tag string
}

type incremented struct{ By int }

var errLimit = errors.New("limit reached")

const limit = 10

func counterDecider(mutate bool) command.Decider[counter, increment, incremented] {
	return command.Decider[counter, increment, incremented]{
		Initial: func() counter { return counter{Seen: map[string]bool{}} },
		Decide: func(s counter, c increment) ([]incremented, error) {
			if mutate {
				s.Seen[c.Tag] = true
			}
			if s.N+c.By > limit {
				return nil, fmt.Errorf("%w: %d+%d", errLimit, s.N, c.By)
			}
			if c.By == 0 {
				return nil, nil
			}
			return []incremented{{By: c.By}}, nil
		},
		Evolve: func(s counter, e incremented) counter {
			s.N += e.By
			return s
		},
	}
}

// recorder is a testing.TB that keeps failures instead of failing the test.
type recorder struct {
	testing.TB
	failures []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

func TestPassingScenarios(t *testing.T) {
	d := counterDecider(false)
	commandtest.For(t, d).When(increment{By: 3}).Then(incremented{By: 3})
	commandtest.For(t, d).Given(incremented{By: 9}).When(increment{By: 2}).ThenError(errLimit)
	commandtest.For(t, d).Given(incremented{By: 9}).When(increment{By: 0}).Then()
	commandtest.For(t, d).Given(incremented{By: 4}).When(increment{By: 2}).
		ThenState(counter{N: 6, Seen: map[string]bool{}})
}

func TestFailureMessages(t *testing.T) {
	d := counterDecider(false)
	tests := []struct {
		name string
		run  func(tb testing.TB)
		want []string // substrings of the one failure message
	}{
		{
			name: "other events",
			run: func(tb testing.TB) {
				commandtest.For(tb, d).Given(incremented{By: 1}).When(increment{By: 2}).Then(incremented{By: 5})
			},
			want: []string{
				"given:\n    commandtest_test.incremented{By:1}\n",
				"when:\n    commandtest_test.increment{By:2 Tag:}\n",
				"(-want +got)",
				"- commandtest_test.incremented{By:5}\n+ commandtest_test.incremented{By:2}\n",
			},
		},
		{
			name: "error instead of events",
			run: func(tb testing.TB) {
				commandtest.For(tb, d).Given(incremented{By: 10}).When(increment{By: 1}).Then(incremented{By: 1})
			},
			want: []string{"Decide returned error: limit reached: 10+1", "want:\n    commandtest_test.incremented{By:1}"},
		},
		{
			name: "events instead of error",
			run: func(tb testing.TB) {
				commandtest.For(tb, d).When(increment{By: 1}).ThenError(errLimit)
			},
			want: []string{"want error limit reached, Decide accepted the command", "    commandtest_test.incremented{By:1}"},
		},
		{
			name: "other error",
			run: func(tb testing.TB) {
				commandtest.For(tb, d).Given(incremented{By: 10}).When(increment{By: 1}).ThenError(errors.New("other"))
			},
			want: []string{"want error matching other, got limit reached: 10+1"},
		},
		{
			name: "no command",
			run: func(tb testing.TB) {
				commandtest.For(tb, d).Given(incremented{By: 1}).Then()
			},
			want: []string{"call When before Then"},
		},
		{
			name: "state",
			run: func(tb testing.TB) {
				commandtest.For(tb, d).When(increment{By: 1}).ThenState(counter{N: 2, Seen: map[string]bool{}})
			},
			want: []string{"- {N:2 Seen:map[]}\n+ {N:1 Seen:map[]}\n"},
		},
		{
			name: "mutating decide",
			run: func(tb testing.TB) {
				commandtest.For(tb, counterDecider(true)).When(increment{By: 1, Tag: "x"}).Then(incremented{By: 1})
			},
			want: []string{"Decide mutated the state", "+ {N:0 Seen:map[x:true]}"},
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

func TestDiff(t *testing.T) {
	tests := []struct {
		want, got []string
		diff      string
	}{
		{nil, nil, "  (no events)\n"},
		{[]string{"a", "b", "c"}, []string{"a", "b", "c"}, "  a\n  b\n  c\n"},
		{[]string{"a", "b", "c"}, []string{"a", "x", "c"}, "  a\n- b\n+ x\n  c\n"},
		{[]string{"a", "b"}, []string{"b"}, "- a\n  b\n"},
		{[]string{"b"}, []string{"a", "b", "c"}, "+ a\n  b\n+ c\n"},
		{[]string{"a"}, nil, "- a\n"},
	}
	for _, tt := range tests {
		if got := commandtest.Diff(tt.want, tt.got); got != tt.diff {
			t.Errorf("Diff(%q, %q) =\n%s\nwant\n%s", tt.want, tt.got, got, tt.diff)
		}
	}
}

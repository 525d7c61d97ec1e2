package cli_test

import (
	"context"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/query"
)

// TestReplayForcePartitioned runs replay --force on a partitioned projection
// whose projector runs: the progress lines show the total and a line per
// partition (checkpoint, lag, writer); generation 1 is built in every
// partition and switched to; the projector takes its partitions over and
// status lists the new generation with a row per partition.
func TestReplayForcePartitioned(t *testing.T) {
	const events, n = 20_000, 3
	e := newEnv(t, events)
	ctx := context.Background()
	p := projection.Partitioned(counter("parts", 1), n, nil)
	projector := e.startProjector(t, p, "projector", time.Second, 60*time.Second)

	cfg := e.config(p)
	cfg.Runner.BatchSize = 200
	out, _, err := run(ctx, cfg, "replay", "--force", "parts", "--interval", "1ms")
	if err != nil {
		t.Fatalf("replay --force: %v\n%s", err, out)
	}
	t.Logf("output:\n%s", out)
	for _, w := range []string{"parts v1 generation 1 total: catching_up ", "parts v1 generation 1 p0/3: ",
		"parts v1 generation 1 p1/3: ", "parts v1 generation 1 p2/3: ", ", lag ", "parts: v1 generation 1 active at 20000, replaced v1 (removed)"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q", w)
		}
	}
	// The last partition line of each kind shows the head with no lag.
	if !strings.Contains(out, "p0/3: 20000/20000, lag 0, writer ") {
		t.Errorf("no partition line at the head with lag 0")
	}

	v, err := query.Resolve(ctx, e.rdb, "parts")
	if err != nil || v.Build() != (query.Build{Version: 1, Generation: 1}) || v.Partitions != n {
		t.Fatalf("active after replay --force: %+v, %v", v, err)
	}
	want := map[string]string{}
	for i := 0; i < events; i += 100 {
		s := "s-" + string(rune('a'+i%7))
		c, _ := strconv.Atoi(want[s])
		want[s] = strconv.Itoa(c + 100)
	}
	got := map[string]string{}
	for _, k := range v.PartitionKeys("counts") {
		maps.Copy(got, e.rdb.HGetAll(ctx, k).Val())
	}
	if !maps.Equal(got, want) {
		t.Fatalf("generation 1 counts %v, want %v", got, want)
	}
	for p := range n {
		prefix := query.PartitionPrefix("parts", query.Version(1), query.Partition{Index: p, Count: n})
		if keys := e.rdb.Keys(ctx, prefix+"*").Val(); len(keys) != 0 {
			t.Errorf("keys of generation 0 left: %v", keys)
		}
	}

	// The projector follows generation 1 in every partition.
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	for {
		st, err := projection.ReadStatus(ctx, e.rdb, "parts", query.Build{})
		if err == nil && st.Generation == 1 && st.Holder == "projector" && st.State == projection.StateRunning {
			break // the total's state is the worst partition's
		}
		if wctx.Err() != nil {
			t.Fatalf("the projector does not hold generation 1: %+v, %v", st, err)
		}
		time.Sleep(5 * time.Millisecond) // polling Redis, not synchronising
	}
	if stopped, err := projector.stopped(); stopped {
		t.Fatalf("projector stopped: %v", err)
	}
	table, _, err := run(ctx, cfg, "status")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("status:\n%s", table)
	rows := 0
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 3 && f[0] == "parts":
			rows++
			if f[1] != "v1" || f[2] != "1" || f[3] != "*" {
				t.Errorf("parts row %q: want v1, generation 1, active", line)
			}
		case len(f) > 2 && strings.HasPrefix(f[0], "p") && strings.HasSuffix(f[0], "/3"):
			rows++
			if f[1] != "v1" || f[2] != "1" || !strings.Contains(line, "projector") {
				t.Errorf("partition row %q: want v1 generation 1 held by the projector", line)
			}
		}
	}
	if rows != 1+n {
		t.Errorf("status has %d rows of parts, want the total and %d partitions", rows, n)
	}
}

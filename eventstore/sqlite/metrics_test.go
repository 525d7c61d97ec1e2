package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/sqlite"
)

// Every append is counted in exactly one group commit.
func TestGroupCommitMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	st, err := sqlite.Open(context.Background(), sqlite.Config{
		Path: filepath.Join(t.TempDir(), "events.db"), Sync: sqlite.SyncNormal, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ev := eventstore.Event{Type: "thing.happened", Data: []byte(`{}`)}
			if _, err := st.Append(context.Background(), fmt.Sprintf("s-%d", i), eventstore.NoStream, ev, ev); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]float64{}
	counts := map[string]uint64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			sums[f.GetName()] += m.GetHistogram().GetSampleSum()
			counts[f.GetName()] += m.GetHistogram().GetSampleCount()
		}
	}
	commits := counts["eventline_store_group_commit_appends"]
	if sums["eventline_store_group_commit_appends"] != n || sums["eventline_store_group_commit_events"] != 2*n ||
		commits == 0 || commits > n || counts["eventline_store_commit_duration_seconds"] != commits {
		t.Fatalf("appends %v, events %v in %d commits (%d timed); want %d appends, %d events",
			sums["eventline_store_group_commit_appends"], sums["eventline_store_group_commit_events"], commits,
			counts["eventline_store_commit_duration_seconds"], n, 2*n)
	}
	t.Logf("%d appends in %d group commits", n, commits)
}

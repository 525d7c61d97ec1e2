package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/postgres"
)

func TestGroupCommitMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	st := openStore(t, testDB(t), postgres.Config{Registerer: reg})
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
	// The writer records a commit just after answering its appends, one
	// histogram after the other: wait until the last commit is in all of
	// them.
	var sums map[string]float64
	var counts map[string]uint64
	for deadline := time.Now().Add(10 * time.Second); ; {
		sums, counts = histograms(t, reg)
		commits := counts["eventline_store_group_commit_appends"]
		if sums["eventline_store_group_commit_appends"] == n && sums["eventline_store_group_commit_events"] == 2*n &&
			counts["eventline_store_commit_duration_seconds"] == commits && counts["eventline_store_group_commit_events"] == commits ||
			time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	commits := counts["eventline_store_group_commit_appends"]
	if sums["eventline_store_group_commit_appends"] != n || sums["eventline_store_group_commit_events"] != 2*n ||
		commits == 0 || commits > n || counts["eventline_store_commit_duration_seconds"] != commits ||
		counts["eventline_store_group_commit_events"] != commits {
		t.Fatalf("appends %v, events %v in %d commits (%d timed); want %d appends, %d events",
			sums["eventline_store_group_commit_appends"], sums["eventline_store_group_commit_events"], commits,
			counts["eventline_store_commit_duration_seconds"], n, 2*n)
	}
	t.Logf("%d appends in %d group commits", n, commits)
}

// histograms returns the sample sum and count of every histogram in reg, by
// name, checking that the store labels them backend="postgres".
func histograms(t *testing.T, reg *prometheus.Registry) (map[string]float64, map[string]uint64) {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sums, counts := map[string]float64{}, map[string]uint64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "backend" && l.GetValue() != "postgres" {
					t.Fatalf("%s has backend=%q", f.GetName(), l.GetValue())
				}
			}
			sums[f.GetName()] += m.GetHistogram().GetSampleSum()
			counts[f.GetName()] += m.GetHistogram().GetSampleCount()
		}
	}
	return sums, counts
}

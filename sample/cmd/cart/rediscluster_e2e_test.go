package main_test

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/eventline/eventline/internal/redistest"
	"github.com/eventline/eventline/projection"
	qry "github.com/eventline/eventline/query"
)

// TestEndToEndOnRedisCluster runs the split roles on a Redis Cluster of three
// masters with a replica each, named by the same EVENTLINE_REDIS_URL setting
// in its cluster form: one command API, two projectors and two query APIs.
// Half-way through a random workload the master holding the carts model is
// killed and its replica takes over; both query APIs then answer exactly
// what the accepted commands imply, and the status command reads the
// cluster.
func TestEndToEndOnRedisCluster(t *testing.T) {
	rc := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, ReplicasPerMaster: 1})
	env := []string{
		"EVENTLINE_STORE_URL=" + filepath.Join(t.TempDir(), "events.db"),
		"EVENTLINE_REDIS_URL=" + rc.URL,
	}
	commands := start(t, "command-api", env...)
	start(t, "projector", env...)
	start(t, "projector", env...)
	q1 := start(t, "query-api", env...)
	q2 := start(t, "query-api", env...)

	rng := rand.New(rand.NewPCG(3, uint64(time.Now().UnixNano())))
	m := newModel()
	opens, rest := workload(rng, "cart", 30)
	run(t, commands.url, m, opens, 8, nil)
	half := len(rest) / 2
	run(t, commands.url, m, rest[:half], 16, nil)
	// The carts model's keys share one slot: kill its master.
	master := rc.MasterOf(qry.ActiveKey("carts"))
	t.Logf("killing node %d, master of the carts model", master)
	rc.Kill(master)
	run(t, commands.url, m, rest[half:], 16, nil)
	rc.WaitHealthy()
	m.check(t, q1.url)
	m.check(t, q2.url)

	rows, out := statusJSON(t, env)
	active := 0
	for _, r := range rows {
		if r.Active {
			active++
			if r.Holder == "" || r.Checkpoint.IsZero() {
				t.Errorf("status of %s: holder %q, checkpoint %s", r.Name, r.Holder, r.Checkpoint)
			}
		}
	}
	if active == 0 {
		t.Fatalf("status shows no active projection:\n%s", out)
	}
}

// statusJSON runs `cart status --json` with env and returns its rows and its
// output.
func statusJSON(t *testing.T, env []string) ([]projection.Status, []byte) {
	t.Helper()
	cmd := exec.Command(cartBinary(t), "status", "--json")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cart status: %v\n%s", err, out)
	}
	var rows []projection.Status
	if err := json.Unmarshal(out, &rows); err != nil {
		t.Fatalf("cart status --json: %v\n%s", err, out)
	}
	return rows, out
}

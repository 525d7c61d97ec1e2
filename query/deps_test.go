package query_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsNoWriteSide checks that the query side can be deployed without
// the write side: no command package, no store backend, no projection engine.
func TestImportsNoWriteSide(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/eventline/eventline/query").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const mod = "github.com/eventline/eventline/"
	allowed := map[string]bool{mod + "query": true, mod + "eventstore": true}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, mod) && !allowed[p] {
			t.Errorf("query depends on %s", p)
		}
	}
}

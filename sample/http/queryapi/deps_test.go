package queryapi_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsNoWriteSide checks that the query API deploys without the write
// side: no command package, no store backend, no projection engine, no domain
// package (they depend on the command side).
func TestImportsNoWriteSide(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/eventline/eventline/sample/http/queryapi").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const mod = "github.com/eventline/eventline/"
	allowed := map[string]bool{
		mod + "sample/http/queryapi":    true,
		mod + "sample/readmodel/schema": true,
		mod + "query":                   true,
		mod + "eventstore":              true,
		// The sample's error body, codes and decoder; it imports only the
		// standard library, and anything it came to import would be listed here too.
		mod + "sample/http/httpjson": true,
	}
	seen := false
	for _, p := range strings.Fields(string(out)) {
		if p == mod+"query" {
			seen = true
		}
		if strings.HasPrefix(p, mod) && !allowed[p] {
			t.Errorf("sample/http/queryapi depends on %s", p)
		}
	}
	if !seen {
		t.Fatalf("go list printed no dependency on package query; is the output right?\n%s", out)
	}
}

package esdb

import (
	"os"
	"testing"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/eventstoretest"
	"github.com/google/uuid"
)

// TestContract runs the shared contract suite against the EventStoreDB named
// by EVENTLINE_ESDB_URL (e.g. esdb://localhost:2113?tls=false).
//
// The suite expects a fresh, empty store per subtest; a server is shared by
// every subtest and every run, so each store gets a StreamPrefix of its own
// and sees only its own streams in ReadAll, Subscribe and Head.
func TestContract(t *testing.T) {
	url := os.Getenv("EVENTLINE_ESDB_URL")
	if url == "" {
		t.Skip("EVENTLINE_ESDB_URL not set: no EventStoreDB server on this machine; see docs/esdb.md")
	}
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store {
		s, err := Open(t.Context(), Config{
			URL:          url,
			StreamPrefix: "eventline-test-" + uuid.NewString() + "-",
			// The suite appends a 1 MiB event with three small ones in one
			// append; the server must run with MaxAppendSize above 1 MiB too
			// (docs/esdb.md).
			MaxEventSize: 2 << 20,
			Logger:       discardLogger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}, eventstoretest.PerStreamEventIDs(), eventstoretest.IdenticalRepeatsUnreported())
}

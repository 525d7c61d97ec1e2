package memory_test

import (
	"testing"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/eventstoretest"
	"github.com/eventline/eventline/eventstore/memory"
)

func TestContract(t *testing.T) {
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store {
		s := memory.New()
		t.Cleanup(func() { s.Close() })
		return s
	})
}

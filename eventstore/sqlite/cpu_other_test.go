//go:build !unix

package sqlite

import "time"

// processCPU is not measured here: benchmarks report no CPU time per event.
func processCPU() time.Duration { return 0 }

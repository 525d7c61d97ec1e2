//go:build !unix

package command_test

import "time"

// processCPU is not measured here: benchmarks report no CPU time per command.
func processCPU() time.Duration { return 0 }

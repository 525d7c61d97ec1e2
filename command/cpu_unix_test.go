//go:build unix

package command_test

import (
	"syscall"
	"time"
)

// processCPU is the CPU time the process has used, user and system. Per command,
// it is a steadier figure than events/s on a machine shared with other work.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

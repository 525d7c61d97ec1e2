//go:build linux

package sqlite

import (
	"context"
	"fmt"
	"os"
	"syscall"
)

// writeErrorCause is what SQLite says when its write fails so
// (SQLITE_IOERR_WRITE).
const writeErrorCause = "disk I/O error"

// writeErrorCommit runs the real COMMIT with the process's file size limit
// (RLIMIT_FSIZE) at the WAL's current size, so that SQLite's write of the
// transaction's frames to the end of the WAL fails with EFBIG, as on a full
// disk. The Go runtime ignores the SIGXFSZ that comes with it. The limit is
// the process's: the tests of this package do not run in parallel.
func writeErrorCommit(ctx context.Context, wal string, real func(context.Context) error) error {
	var was syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &was); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	fi, err := os.Stat(wal)
	if err != nil {
		return err
	}
	limit := was
	limit.Cur = uint64(fi.Size())
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
		return fmt.Errorf("setrlimit: %w", err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_FSIZE, &was)
	return real(ctx)
}

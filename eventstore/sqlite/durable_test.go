package sqlite_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/eventstore/sqlite"
)

// The durability test runs a store in a child process under strace and reads
// the order of its system calls: the events' bytes reach the WAL file
// (pwrite64), the WAL is fsynced (fsync or fdatasync on the -wal file), and
// only then does the process print the append's acknowledgment (write to
// stdout). strace stops a thread at each syscall's entry and exit and records
// them in the order it sees them, so a syscall that causally follows another
// (the acknowledgment follows the commit's return) is always recorded after
// the other's exit. No timing is involved.

// Environment of the child process.
const (
	helperEnv     = "EVENTLINE_SQLITE_SYNC_HELPER" // the store's path
	helperModeEnv = "EVENTLINE_SQLITE_SYNC_HELPER_MODE"
	ackPrefix     = "ack "
)

// helperCallers × helperAppends appends, each acknowledged on stdout.
const (
	helperCallers = 4
	helperAppends = 8
)

// marker is the unique text in the data of caller g's append i, found again
// in the bytes written to the WAL.
func marker(g, i int) string { return fmt.Sprintf("durable-%02d-%03d", g, i) }

// TestSyncHelperProcess is the child of TestAcknowledgedOnlyAfterWALFsync; it
// does nothing in a normal test run.
func TestSyncHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		return
	}
	mode, err := sqlite.ParseSyncMode(os.Getenv(helperModeEnv))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := sqlite.Open(ctx, sqlite.Config{Path: path, Sync: mode})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	for g := range helperCallers {
		wg.Go(func() {
			for i := range helperAppends {
				m := marker(g, i)
				_, err := s.Append(ctx, "stream-"+strconv.Itoa(g), eventstore.Exact(uint64(i)),
					eventstore.Event{Type: "t", Data: []byte(`{"m":"` + m + `"}`)})
				if err != nil {
					t.Error(err)
					return
				}
				// One write syscall per acknowledgment.
				if _, err := os.Stdout.WriteString(ackPrefix + m + "\n"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestAcknowledgedOnlyAfterWALFsync shows that with the default Sync mode an
// append returns only after an fsync of the WAL that began after the append's
// events were written to it: an acknowledged append is on the disk. The same
// check run on SyncNormal must find acknowledgments without such an fsync,
// which shows that the check can fail.
func TestAcknowledgedOnlyAfterWALFsync(t *testing.T) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("strace is required in CI (apt-get install strace): ", err)
		}
		t.Skip("strace not installed: ", err)
	}
	for _, mode := range []string{"", "normal"} {
		name := mode
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			calls := traceHelper(t, strace, mode)
			acked, synced, why := checkAcks(calls)
			if acked != helperCallers*helperAppends {
				t.Fatalf("the trace holds %d acknowledgments, want %d", acked, helperCallers*helperAppends)
			}
			switch mode {
			case "":
				if synced != acked {
					t.Errorf("%d of %d acknowledgments had no fsync of the WAL between the write of their events and the acknowledgment; first: %s",
						acked-synced, acked, why)
				}
			case "normal":
				// NORMAL fsyncs the WAL only at checkpoints, which may happen to
				// fall in between for some appends, never for all.
				if synced == acked {
					t.Errorf("with synchronous=NORMAL every one of %d acknowledgments followed a WAL fsync: the check cannot tell", acked)
				}
				t.Logf("normal: %d of %d acknowledgments followed a WAL fsync (checkpoints)", synced, acked)
			}
		})
	}
}

// syscall is one traced system call: its name, its first argument's path
// (strace -y), the text of its arguments, and the trace lines of its entry
// and exit.
type syscall struct {
	name, path, args string
	entry, exit      int
}

// traceHelper runs TestSyncHelperProcess under strace and returns the calls
// it traced.
func traceHelper(t *testing.T, strace, mode string) []syscall {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "trace")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, strace, "-f", "-y", "-qq", "-s", "65536", "-o", out,
		"-e", "trace=write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync,sync_file_range",
		os.Args[0], "-test.run=^TestSyncHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+filepath.Join(dir, "events.db"), helperModeEnv+"="+mode)
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("strace %s: %v\nstdout: %s", cmd.Args, err, stdout)
	}
	if n := strings.Count(string(stdout), ackPrefix+"durable-"); n != helperCallers*helperAppends {
		t.Fatalf("the child acknowledged %d appends, want %d:\n%s", n, helperCallers*helperAppends, stdout)
	}
	calls, err := parseTrace(out)
	if err != nil {
		t.Fatal(err)
	}
	return calls
}

var (
	traceLine   = regexp.MustCompile(`^(\d+)\s+(.*)$`)
	resumedLine = regexp.MustCompile(`^<\.\.\. (\w+) resumed>`)
	callLine    = regexp.MustCompile(`^(\w+)\((\d+)(?:<([^>]*)>)?(.*)$`)
	// strace pads short lines before the result.
	succeeded = regexp.MustCompile(`\)\s+= 0$`)
)

// parseTrace reads an strace -f -y output file. A call interrupted by
// another thread's is printed twice, "<unfinished ...>" at its entry and
// "<... name resumed>" at its exit; the two are joined.
func parseTrace(path string) ([]syscall, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var calls []syscall
	pending := map[string]int{} // thread id → index in calls of its unfinished call
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	for n := 0; sc.Scan(); n++ {
		m := traceLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		tid, rest := m[1], m[2]
		if r := resumedLine.FindStringSubmatch(rest); r != nil {
			if i, ok := pending[tid]; ok && calls[i].name == r[1] {
				calls[i].exit = n
				calls[i].args += rest[len(r[0]):]
				delete(pending, tid)
			}
			continue
		}
		c := callLine.FindStringSubmatch(rest)
		if c == nil {
			continue // signals, exits
		}
		call := syscall{name: c[1], path: c[3], args: c[4], entry: n, exit: n}
		if strings.HasSuffix(rest, "<unfinished ...>") {
			call.exit = -1
			pending[tid] = len(calls)
		}
		calls = append(calls, call)
	}
	return calls, sc.Err()
}

// checkAcks finds each acknowledgment written by the child and tells whether
// an fsync of the WAL began after the write of that append's events to the
// WAL ended, and ended before the acknowledgment began. It returns the
// number of acknowledgments, how many were so synced, and why the first that
// was not failed.
func checkAcks(calls []syscall) (acked, synced int, why string) {
	isWAL := func(c syscall) bool { return strings.HasSuffix(c.path, "-wal") }
	for _, ack := range calls {
		if ack.name != "write" || !strings.Contains(ack.args, `"`+ackPrefix+"durable-") {
			continue
		}
		acked++
		m := ack.args[strings.Index(ack.args, "durable-"):]
		m = m[:len("durable-00-000")]
		// The first WAL write holding m is the commit of the append; later
		// commits may write the same page again.
		written := -1
		for _, c := range calls {
			if strings.HasPrefix(c.name, "pwrite") && isWAL(c) && strings.Contains(c.args, m) {
				written = c.exit
				break
			}
		}
		if written < 0 || written > ack.entry {
			if why == "" {
				why = m + ": its events were not seen written to the WAL before the acknowledgment"
			}
			continue
		}
		ok := false
		for _, c := range calls {
			if (c.name == "fsync" || c.name == "fdatasync") && isWAL(c) && c.entry > written &&
				c.exit >= 0 && c.exit < ack.entry && succeeded.MatchString(c.args) {
				ok = true
				break
			}
		}
		if ok {
			synced++
		} else if why == "" {
			why = fmt.Sprintf("%s: written to the WAL (trace line %d), acknowledged (line %d) with no WAL fsync in between",
				m, written+1, ack.entry+1)
		}
	}
	return acked, synced, why
}

// TestParseSyncMode reads back what String writes, takes "" as the durable
// default and refuses other names with ErrInvalidConfig.
func TestParseSyncMode(t *testing.T) {
	for _, m := range []sqlite.SyncMode{sqlite.SyncFull, sqlite.SyncNormal} {
		if got, err := sqlite.ParseSyncMode(m.String()); err != nil || got != m {
			t.Errorf("ParseSyncMode(%q) = %v, %v; want %v", m.String(), got, err, m)
		}
	}
	if got, err := sqlite.ParseSyncMode(""); err != nil || got != sqlite.SyncFull {
		t.Errorf(`ParseSyncMode("") = %v, %v; want full`, got, err)
	}
	for _, s := range []string{"off", "extra", "1"} {
		if _, err := sqlite.ParseSyncMode(s); !errors.Is(err, sqlite.ErrInvalidConfig) {
			t.Errorf("ParseSyncMode(%q): %v, want ErrInvalidConfig", s, err)
		}
	}
}

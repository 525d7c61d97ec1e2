// Command eventline-bench measures eventline against the machine's own
// ceilings in one run and prints one table.
//
//	go run ./cmd/eventline-bench            # full mode, several minutes
//	go run ./cmd/eventline-bench --quick    # CI smoke run, well under a minute
//	go run ./cmd/eventline-bench --json     # the same rows as JSON
//	go run ./cmd/eventline-bench --cpuprofile cpu.out --profile-phase catchup-sample
//
// The profile covers one phase only (default commands-http-64), so that it
// shows one path rather than the whole run. Below the table, a second table
// gives each phase's wall time and the CPU time this process and the private
// redis-server used in it, and the load average after it: on a shared
// machine, that says whether a figure was starved.
//
// Absolute figures on a shared machine drift, so every framework figure is
// printed beside a ceiling measured in the same run, on the same machine, and
// the ratio between them is what the project tracks:
//
//   - ceilings: raw modernc.org/sqlite inserts in transactions of 100 rows into
//     a table shaped like the store's, with synchronous=NORMAL and FULL; the
//     disk's synced 4 KiB writes per second (overwrite + fsync, as a reused
//     WAL is written);
//     go-redis pipelined HSET (pipelines of 500, one connection); trivial
//     net/http JSON handlers under the load generator used for the sample's
//     HTTP APIs: a GET answered with a small document (the query rows'
//     ceiling) and a POST whose small JSON body is decoded and answered
//     (the command rows'), each row noting the CPU time per request;
//   - write path: appends through eventstore/sqlite with 1 and 64 writers; the
//     shopping-cart workload (carts × open, 5 add-item, checkout) through the
//     command HTTP API and through command.Handler directly, with 1 and 64
//     callers, on the store's default synchronous=FULL; the command.Handler
//     rows again on a synchronous=NORMAL store right after, each FULL row
//     noting its ratio to NORMAL;
//   - read path: catch-up of the sample's read models over the events just
//     written, and of a simple projection over a synthetic log; live lag from
//     append to visible in Redis at steady rates; the query HTTP API with and
//     without ?after=;
//   - rebuild: blue/green projection.Rebuild over a synthetic log, with peak RSS.
//
// Rows that can be checked say so in the correct column: after catch-up,
// every cart's read model is compared with what its accepted commands imply.
//
// Without --redis-url the command starts a private redis-server (from PATH) on
// a free loopback port with persistence off, in a temporary directory, and
// stops it at exit. The event store is a SQLite file in a temporary directory.
// The load generator is Go code in this package: a closed loop of client
// goroutines sharing one http.Client, each sending its next request when the
// previous answer arrived.
//
// Timings never decide anything here: --quick exists so that CI can check
// that every path still runs and is still correct, not how fast it is.
package main

// Package chaos is the sample's chaos harness, run as "cart chaos": it
// starts the roles of the cart binary as separate OS processes — 2
// command-api, 2 projector, 2 query-api and the saga — with a private
// redis-server and a fresh PostgreSQL database (or a SQLite file), drives a
// mixed workload over HTTP (customers, carts, items, checkouts and so
// orders), and injects faults chosen at random from a seed:
//
//   - SIGKILL of a role, restarted after a moment;
//   - SIGSTOP of a role for longer than the projection lease TTL, then SIGCONT;
//   - Redis killed and started again empty (the projectors rebuild every
//     model from the log, the saga's relay starts over);
//   - latency, loss, partitions and black holes between one role and Redis
//     or the store. Every role reaches its dependencies through TCP proxies
//     of its own, which delay or hold back chunks; as root on Linux every
//     role also runs in a network namespace of its own, and partitions are
//     iptables rules there that reset or drop its packets (without root the
//     proxies cut or stall the connections instead).
//
// The same seed gives the same fault schedule, printed at the start. After
// each fault it measures the time until the system serves read-your-writes
// again (a new command, then a read of it with ?after= on every query API).
//
// After the workload it waits for the system to settle and checks, without
// the sample's code (its own decoding and fold of the log):
//
//   - every command acknowledged with a 2xx is in the log exactly once, at the
//     position it was acknowledged with (commands carry Idempotency-Key, which
//     the command handler records on their events); refused ones are not;
//   - every document every query API serves (carts, orders, customers, the
//     products leaderboard) equals the checker's fold of the log;
//   - every order is confirmed or rejected; a confirmed order's cart is
//     checked out for it and the customer's credit reserved for its total; a
//     rejected order's cart was reopened and no credit is left reserved;
//   - no projection batch landed without its lease: every batch announces its
//     checkpoint on {el:<projection>}:commits from inside its MULTI/EXEC, so
//     the announcement exists exactly when the batch landed; the checker
//     subscribes on its own connection and requires the announced positions
//     of each build to strictly increase (a stale lease holder's batch would
//     repeat or go back);
//   - the system recovered within a bound after each fault.
//
// Run returns a Report; Report.Print writes it. See "Chaos testing" in
// docs/operations.md.
package chaos

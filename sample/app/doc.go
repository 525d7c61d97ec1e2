// Package app assembles the sample shopping-cart application from its parts:
// configuration (flags with environment variable equivalents), the event
// store and Redis clients, the command and query HTTP APIs, the projection
// runners, and the operational endpoints every role serves.
//
// # Roles
//
// One binary runs in one of several roles (Run):
//
//   - RoleServe: everything in one process on the embedded default — a
//     SQLite file for the events and an in-process Redis (miniredis) reached
//     by go-redis over loopback, so that the embedded and the split
//     deployments run the same code.
//   - RoleCommandAPI: the command API over the event store.
//   - RoleProjector: the projection runners, from the event store into Redis.
//     Run as many as you like: a lease per projection lets one write while
//     the others stand by.
//   - RoleQueryAPI: the query API over Redis alone; it never opens the event
//     store, so it keeps answering while the write side is down.
//   - RoleSaga: the order/credit saga (package saga) and the relay that
//     feeds it, over Redis Streams. In serve they meet on an in-process
//     GoChannel instead.
//
// Every role serves /healthz (the process is alive), /readyz (the role's
// dependencies answer: the store for the command API, Redis for the query
// API, both for the projector) and /metrics (Prometheus, from a registry of
// the process's own, never the global one).
//
// # Configuration
//
// Config.BindFlags registers --store, --redis, --addr and --log-level; each
// defaults to its environment variable (EVENTLINE_STORE_URL,
// EVENTLINE_REDIS_URL, EVENTLINE_ADDR, EVENTLINE_LOG_LEVEL), and to the
// role's default when that is unset. A missing or unusable setting is a
// *SettingError: one line naming the setting, flag and variable.
package app

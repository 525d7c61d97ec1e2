// Package cli is the operator's command set for projections, ready to mount
// in any application binary built with cobra:
//
//	replay [--force] <projection>... | --all
//	                                 rebuild blue/green (projection.Rebuild);
//	                                 --force also rebuilds a version that is
//	                                 already active, as a new generation
//	status [--json]                  every projection build: version,
//	                                 generation, active, checkpoint, head, lag,
//	                                 state, lease holder, dead letters
//
// The application owns its flags, environment and connections: Config gives
// functions that open the event store and the Redis client, and the
// application's projections. The sample mounts the commands as `cart replay`
// and `cart status`.
//
// replay shows a progress bar (events/s, ETA) when its output is a terminal,
// and a plain line every --interval otherwise (logs, CI). It returns nil on
// success and a one-line error otherwise (unknown projection, store or Redis
// unreachable, a rebuild that stopped); the application turns that into a
// non-zero exit code. Ctrl-C (SIGINT) or SIGTERM cancels the rebuild under
// way: the live version is untouched and the partial new version removed.
//
// status reads Redis and the head of the log only; it never starts a runner.
package cli

package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/eventline/eventline/sample/chaos"
)

// errViolated is returned when a chaos run found a violated invariant.
var errViolated = errors.New("chaos: invariants violated (see the report)")

// chaosCommand is "cart chaos": a topology of this binary's roles as
// separate processes, a workload, random faults from a seed, and a check of
// the invariants afterwards (package sample/chaos).
func chaosCommand() *cobra.Command {
	var cfg chaos.Config
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Run the roles as processes under a workload and random faults, then check that nothing was lost",
		Long: `chaos starts 2 command-api, 2 projector, 2 query-api and a saga process of
this binary, a private redis-server and a fresh PostgreSQL database (or a
SQLite file), drives a mixed workload over HTTP and injects faults at random
from --seed: SIGKILL and restart, pauses longer than the lease TTL, Redis
restarted empty, latency, loss and partitions between a role and Redis or the
store. Then it checks the log and every read model against its own fold of
the log and prints a report. Exit status 1 when an invariant was violated.
See "Chaos testing" in docs/operations.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := os.Executable()
			if err != nil {
				return asRoleError(fmt.Errorf("chaos: cannot find this executable: %w", err))
			}
			cfg.CartBinary = bin
			cfg.Out = cmd.OutOrStdout()
			if err := cfg.Validate(); err != nil {
				return err // a usage error: exit 2
			}
			rep, err := chaos.Run(cmd.Context(), cfg)
			if err != nil {
				return asRoleError(err)
			}
			rep.Print(cmd.OutOrStdout())
			if rep.Failed() {
				return asRoleError(errViolated)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&cfg.Seed, "seed", 0, "seed of the fault schedule and the workload; 0 picks one (printed)")
	f.DurationVar(&cfg.Duration, "duration", time.Minute, "how long the workload runs under faults")
	f.StringVar(&cfg.Store, "store", chaos.StorePostgres, "event store: postgres (a fresh database on --postgres) or sqlite")
	f.StringVar(&cfg.PostgresURL, "postgres", os.Getenv("EVENTLINE_POSTGRES_URL"),
		"PostgreSQL server on which a fresh database is created and dropped; default postgres://postgres@127.0.0.1:5432/postgres (env EVENTLINE_POSTGRES_URL)")
	f.IntVar(&cfg.Workers, "workers", 6, "concurrent clients")
	f.DurationVar(&cfg.Gap, "gap", 3*time.Second, "mean time between the end of a fault and the next")
	f.DurationVar(&cfg.RecoveryBound, "recovery-bound", 30*time.Second, "longest time after a fault until read-your-writes works again")
	f.DurationVar(&cfg.SettleBound, "settle-bound", 0, "longest time after the workload until every order is final and every read model at the head (default 90s plus half the duration)")
	f.StringVar(&cfg.Netns, "netns", "auto", "a network namespace per role, so that partitions are packets the kernel drops: on, off, or auto (on when root on Linux may create namespaces)")
	f.StringVar(&cfg.Dir, "dir", "", "directory for the processes' logs (default: a temporary one, kept when the run fails)")
	return cmd
}

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/query"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
)

// StatusCommand returns the status command: one row per build (version and
// generation) of every projection (the application's and any other found in Redis), as a table or,
// with --json, as a JSON array of projection.Status.
func StatusCommand(cfg Config) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every projection version: active, generation, checkpoint, head, lag, state, lease holder, dead letters",
		Long: `status reads Redis and the head of the event store; it starts nothing.
GEN is the generation of the version: 0 until the version is rebuilt with
replay --force, which builds generation 1, 2, ... beside the live one.
LAG is in events (- when the store's positions are not counts) and LAG(s) is the
age of the last applied record while behind. If the store is unreachable the
head last written by each runner is shown instead, with a warning. A build
with nothing in it (not active, no checkpoint, no runner, no error) is not
listed. status also warns when Redis may evict keys: the read models need
maxmemory-policy noeviction.`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cfg.Validate(); err != nil {
				return err
			}
			cfg := cfg.withDefaults()
			rows, err := readStatus(cmd.Context(), cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			return writeTable(cmd.OutOrStdout(), rows)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of statuses instead of a table")
	return cmd
}

func readStatus(ctx context.Context, cfg Config, warn io.Writer) ([]projection.Status, error) {
	rdb, err := cfg.openRedis(ctx)
	if err != nil {
		return nil, err
	}
	defer rdb.Close()
	switch err := projection.CheckEvictionPolicy(ctx, rdb); {
	case errors.Is(err, projection.ErrEvictingPolicy):
		fmt.Fprintf(warn, "warning: %v\n", err)
	case err != nil:
		fmt.Fprintf(warn, "warning: cannot check that Redis never evicts read model keys (%v); it needs maxmemory-policy noeviction\n", err)
	}
	var head eventstore.Position
	haveHead := false
	if store, h, err := cfg.openStore(ctx); err != nil {
		fmt.Fprintf(warn, "warning: %v; showing the head last recorded by each runner\n", err)
	} else {
		head, haveHead = h, true
		_ = store.Close()
	}
	names := cfg.names()
	known, err := rdb.SMembers(ctx, projection.ProjectionsKey).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	for _, n := range known {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	rows := []projection.Status{}
	now := time.Now()
	for _, name := range names {
		builds, err := buildsOf(ctx, rdb, name)
		if err != nil {
			return nil, err
		}
		var kept []projection.Status
		for _, b := range builds {
			s, err := projection.ReadStatus(ctx, rdb, name, b)
			if err != nil {
				return nil, err
			}
			if empty(s) {
				continue
			}
			kept = append(kept, s)
		}
		// The version in the application's code gets a row even when
		// nothing of it is built yet: that is what replay would build.
		for _, p := range cfg.Projections {
			if p.Name() == name && !slices.ContainsFunc(kept, func(s projection.Status) bool { return s.Version == p.Version() }) {
				s, err := projection.ReadStatus(ctx, rdb, name, query.Build{Version: p.Version()})
				if err != nil {
					return nil, err
				}
				kept = append(kept, s)
			}
		}
		slices.SortFunc(kept, func(a, b projection.Status) int {
			return compareBuilds(query.Build{Version: a.Version, Generation: a.Generation}, query.Build{Version: b.Version, Generation: b.Generation})
		})
		for _, s := range kept {
			if haveHead {
				s.SetHead(head, now)
			}
			rows = append(rows, s)
		}
	}
	return rows, nil
}

// empty reports a status with nothing behind it: a build that is not
// active, has no checkpoint, no lease holder, no dead letters and no error.
// A runner that stops leaves no such entry, but one that crashed before its
// first batch (or a runner of an older release) may have.
func empty(s projection.Status) bool {
	return !s.Active && s.Checkpoint.IsZero() && s.Holder == "" && s.DeadLetters == 0 && s.Error == ""
}

func compareBuilds(a, b query.Build) int {
	if a.Before(b) {
		return -1
	}
	if b.Before(a) {
		return 1
	}
	return 0
}

// buildsOf lists the builds of name that may be worth a row: those runners
// wrote and the active one.
func buildsOf(ctx context.Context, rdb redis.UniversalClient, name string) ([]query.Build, error) {
	ss, err := rdb.SMembers(ctx, projection.VersionsKey(name)).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	var bs []query.Build
	for _, s := range ss {
		if b, err := query.ParseBuild(s); err == nil {
			bs = append(bs, b)
		}
	}
	switch a, err := rdb.Get(ctx, query.ActiveKey(name)).Result(); {
	case err == nil:
		if b, err := query.ParseBuild(a); err == nil {
			bs = append(bs, b)
		}
	case !errors.Is(err, redis.Nil):
		return nil, fmt.Errorf("redis: %w", err)
	}
	slices.SortFunc(bs, compareBuilds)
	return slices.Compact(bs), nil
}

func writeTable(out io.Writer, rows []projection.Status) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROJECTION\tVERSION\tGEN\tACTIVE\tSTATE\tCHECKPOINT\tHEAD\tLAG\tLAG(s)\tHOLDER\tDEAD\tERROR")
	var flat []projection.Status
	for _, s := range rows {
		flat = append(flat, s)
		// A partitioned build: its total, then a row per partition.
		for _, p := range s.Parts {
			p.Name = fmt.Sprintf("  p%d/%d", p.Partition, len(s.Parts))
			p.Active = false
			flat = append(flat, p)
		}
	}
	for _, s := range flat {
		active := ""
		if s.Active {
			active = "*"
		}
		lag := "-"
		if s.LagEvents >= 0 {
			lag = strconv.FormatInt(s.LagEvents, 10)
		}
		lagS := "-"
		if s.LagSeconds >= 0 {
			lagS = strconv.FormatFloat(s.LagSeconds, 'f', 1, 64)
		}
		fmt.Fprintf(tw, "%s\tv%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", s.Name, s.Version, s.Generation, active, s.State,
			s.Checkpoint, s.Head, lag, lagS, dash(s.Holder), s.DeadLetters, dash(s.Error))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

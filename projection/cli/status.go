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
head last written by each runner is shown instead, with a warning.`,
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
		builds, err := buildsOf(ctx, rdb, cfg, name)
		if err != nil {
			return nil, err
		}
		for _, b := range builds {
			s, err := projection.ReadBuildStatus(ctx, rdb, name, b)
			if err != nil {
				return nil, err
			}
			if haveHead {
				s.SetHead(head, now)
			}
			rows = append(rows, s)
		}
	}
	return rows, nil
}

// buildsOf lists the builds of name worth a row: those runners wrote, the
// active one and, unless a build of it is listed, generation 0 of the version
// in the application's code.
func buildsOf(ctx context.Context, rdb redis.UniversalClient, cfg Config, name string) ([]query.Build, error) {
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
	for _, p := range cfg.Projections {
		if p.Name() == name && !slices.ContainsFunc(bs, func(b query.Build) bool { return b.Version == p.Version() }) {
			bs = append(bs, query.Build{Version: p.Version()})
		}
	}
	slices.SortFunc(bs, func(a, b query.Build) int {
		if a.Before(b) {
			return -1
		}
		if b.Before(a) {
			return 1
		}
		return 0
	})
	return slices.Compact(bs), nil
}

func writeTable(out io.Writer, rows []projection.Status) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROJECTION\tVERSION\tGEN\tACTIVE\tSTATE\tCHECKPOINT\tHEAD\tLAG\tLAG(s)\tHOLDER\tDEAD\tERROR")
	for _, s := range rows {
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

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
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
)

// StatusCommand returns the status command: one row per version of every
// projection (the application's and any other found in Redis), as a table or,
// with --json, as a JSON array of projection.Status.
func StatusCommand(cfg Config) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every projection version: active, checkpoint, head, lag, state, lease holder, dead letters",
		Long: `status reads Redis and the head of the event store; it starts nothing.
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
		versions, err := versionsOf(ctx, rdb, cfg, name)
		if err != nil {
			return nil, err
		}
		for _, v := range versions {
			s, err := projection.ReadStatus(ctx, rdb, name, v)
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

// versionsOf lists the versions of name worth a row: those runners wrote,
// the active one and the one in the application's code.
func versionsOf(ctx context.Context, rdb redis.UniversalClient, cfg Config, name string) ([]int, error) {
	ss, err := rdb.SMembers(ctx, projection.VersionsKey(name)).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	var vs []int
	for _, s := range ss {
		if v, err := strconv.Atoi(s); err == nil && v > 0 {
			vs = append(vs, v)
		}
	}
	if a, err := rdb.Get(ctx, "{el:"+name+"}:active").Int(); err == nil && a > 0 {
		vs = append(vs, a)
	} else if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("redis: %w", err)
	}
	for _, p := range cfg.Projections {
		if p.Name() == name {
			vs = append(vs, p.Version())
		}
	}
	slices.Sort(vs)
	return slices.Compact(vs), nil
}

func writeTable(out io.Writer, rows []projection.Status) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROJECTION\tVERSION\tACTIVE\tSTATE\tCHECKPOINT\tHEAD\tLAG\tLAG(s)\tHOLDER\tDEAD\tERROR")
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
		fmt.Fprintf(tw, "%s\tv%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", s.Name, s.Version, active, s.State,
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

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/projection"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// ReplayCommand returns the replay command: rebuild the named projections (or
// all with --all), one after the other, blue/green with projection.Rebuild.
func ReplayCommand(cfg Config) *cobra.Command {
	var all, force, restart bool
	var interval time.Duration
	var progress string
	cmd := &cobra.Command{
		Use:   "replay [projection...]",
		Short: "Rebuild projections from the whole log, beside the live version, and switch with no gap",
		Long: `replay rebuilds each named projection at the version in this binary's code,
beside the live version, which keeps serving queries and being updated. Once
the new version has caught up with the log, the active version switches
atomically and the old version's keys are removed in the background.

A projection whose code version is already active is skipped, unless --force
is given: then a new generation of that version is built beside the live one
and switched to the same way (for a model damaged by hand or by a bug fixed
without a version bump). Projectors running that version follow the new
generation by themselves.

A partitioned projection is rebuilt the same way: this process builds every
partition of the new build, each under its own lease, while the projectors
keep serving the live build, and the whole projection switches at once when
every partition has caught up. Progress lines then show the total (the
lowest partition's checkpoint) and a line per partition with its checkpoint,
lag and writer.

Ctrl-C cancels: the live version is untouched and the partial new build
removed; running replay again starts over, while a crashed replay resumes from
its checkpoint. --restart discards what a crashed replay left and starts from
the beginning of the log instead (for code changed since the crash).`,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cfg.Validate(); err != nil {
				return err
			}
			cfg := cfg.withDefaults()
			switch {
			case all && len(args) > 0:
				return errors.New("name projections or use --all, not both")
			case !all && len(args) == 0:
				return fmt.Errorf("name the projections to replay, or use --all (known: %s)", cfg.names())
			case interval <= 0:
				return errors.New("--interval must be positive")
			}
			ps := cfg.Projections
			if !all {
				var err error
				if ps, err = cfg.find(args); err != nil {
					return err
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			mode, err := progressMode(progress, out)
			if err != nil {
				return err
			}
			return replay(ctx, cfg, ps, out, mode, interval, projection.RebuildOptions{Force: force, Restart: restart})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "replay every projection of the application")
	cmd.Flags().BoolVar(&force, "force", false, "rebuild even a projection whose code version is already active (as a new generation, blue/green)")
	cmd.Flags().BoolVar(&restart, "restart", false, "discard a partial build left by a crashed replay and start from the beginning of the log instead of resuming")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "how often a progress line is printed when the output is not a terminal")
	cmd.Flags().StringVar(&progress, "progress", "auto", "progress display: auto (bar on a terminal, lines otherwise), bar, lines or none")
	return cmd
}

// Progress display modes.
const (
	modeBar   = "bar"
	modeLines = "lines"
	modeNone  = "none"
)

func progressMode(flag string, out io.Writer) (string, error) {
	switch flag {
	case "auto":
		if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			return modeBar, nil
		}
		return modeLines, nil
	case modeBar, modeLines, modeNone:
		return flag, nil
	}
	return "", fmt.Errorf("--progress %q: want auto, bar, lines or none", flag)
}

func replay(ctx context.Context, cfg Config, ps []projection.Projection, out io.Writer, mode string, interval time.Duration, opts projection.RebuildOptions) error {
	rdb, err := cfg.openRedis(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	store, _, err := cfg.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	for _, p := range ps {
		rc := cfg.Runner
		rc.Store, rc.Redis, rc.Projection = store, rdb, p
		if rc.Logger == nil {
			rc.Logger = cfg.Logger
		}
		// Rebuild's first Progress carries the checkpoint it resumes from,
		// so a resumed rebuild's rate counts from there.
		view := newProgressView(out, mode, interval, p.Name())
		opts.Progress, opts.ProgressEvery = view.update, 100*time.Millisecond
		res, err := projection.Rebuild(ctx, rc, opts)
		view.finish(err == nil && !res.AlreadyActive)
		built := build(res.Version, res.Generation)
		switch {
		case errors.Is(err, context.Canceled) && ctx.Err() != nil:
			return fmt.Errorf("replay cancelled: %w", err)
		case err != nil:
			return fmt.Errorf("replay %s: %w", p.Name(), err)
		case res.AlreadyActive:
			fmt.Fprintf(out, "%s: %s is already active; nothing to rebuild (replay --force %s rebuilds it as a new generation)\n",
				p.Name(), built, p.Name())
		case res.Previous == 0:
			fmt.Fprintf(out, "%s: %s built and active at %s\n", p.Name(), built, res.Checkpoint)
		default:
			fmt.Fprintf(out, "%s: %s active at %s, replaced %s (removed)\n", p.Name(), built, res.Checkpoint,
				build(res.Previous, res.PreviousGeneration))
		}
	}
	return nil
}

// build names a build for people: "v3", or "v3 generation 1".
func build(version, generation int) string {
	if generation == 0 {
		return fmt.Sprintf("v%d", version)
	}
	return fmt.Sprintf("v%d generation %d", version, generation)
}

func roundDuration(d time.Duration) time.Duration {
	if d > time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

// progressView shows the progress of one rebuild: a bar on a terminal, a line
// every interval otherwise.
type progressView struct {
	out      io.Writer
	mode     string
	interval time.Duration
	label    string

	bar       *progressbar.ProgressBar
	first     projection.Progress
	last      projection.Progress
	started   time.Time
	lastLine  time.Time
	lastPhase projection.Phase
	seen      bool
}

func newProgressView(out io.Writer, mode string, interval time.Duration, name string) *progressView {
	return &progressView{out: out, mode: mode, interval: interval, label: name, started: time.Now()}
}

// update is Rebuild's Progress callback; Rebuild calls it from one goroutine.
func (v *progressView) update(p projection.Progress) {
	if !v.seen {
		v.first, v.seen = p, true
		v.label = p.Name + " " + build(p.Version, p.Generation)
	}
	switch v.mode {
	case modeBar:
		if v.bar == nil {
			v.bar = progressbar.NewOptions64(int64(p.Head.Commit),
				progressbar.OptionSetWriter(v.out),
				progressbar.OptionSetDescription(v.label),
				progressbar.OptionShowCount(),
				progressbar.OptionShowIts(),
				progressbar.OptionSetItsString("events"),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionSetRenderBlankState(true),
				progressbar.OptionFullWidth())
		}
		if int64(p.Head.Commit) != v.bar.GetMax64() {
			v.bar.ChangeMax64(int64(p.Head.Commit))
		}
		if p.Phase != v.lastPhase {
			v.bar.Describe(v.label + " " + string(p.Phase))
		}
		_ = v.bar.Set64(int64(p.Checkpoint.Commit))
	case modeLines:
		if p.Phase == v.lastPhase && time.Since(v.lastLine) < v.interval {
			break
		}
		v.lastLine = time.Now()
		fmt.Fprintln(v.out, v.line(p))
		for _, pp := range p.Parts {
			fmt.Fprintln(v.out, partLine(v.label, len(p.Parts), pp, p.Head))
		}
	}
	v.lastPhase, v.last = p.Phase, p
}

// line is the plain progress line: position, share of the log, rate, ETA.
func (v *progressView) line(p projection.Progress) string {
	done := float64(p.Checkpoint.Commit)
	total := float64(p.Head.Commit)
	pct := 100.0
	if total > 0 {
		pct = 100 * done / total
	}
	elapsed := time.Since(v.started).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(p.Checkpoint.Commit-min(v.first.Checkpoint.Commit, p.Checkpoint.Commit)) / elapsed
	}
	eta := "-"
	if rate > 0 && total > done {
		eta = roundDuration(time.Duration((total - done) / rate * float64(time.Second))).String()
	}
	label := v.label
	if len(p.Parts) > 0 {
		// The lowest partition's checkpoint: the whole build is there.
		label += " total"
	}
	return fmt.Sprintf("%s: %s %s/%s (%.1f%%), %.0f events/s, ETA %s, writer %s",
		label, p.Phase, p.Checkpoint, p.Head, pct, rate, eta, holderOrNone(p.Holder))
}

// partLine is the progress line of one partition of a partitioned rebuild:
// its checkpoint, its lag behind the head and its writer.
func partLine(label string, n int, pp projection.PartProgress, head eventstore.Position) string {
	lag := "-"
	if head.Commit == head.Prepare && pp.Checkpoint.Commit == pp.Checkpoint.Prepare && !head.Before(pp.Checkpoint) {
		lag = strconv.FormatUint(head.Commit-pp.Checkpoint.Commit, 10)
	}
	return fmt.Sprintf("%s p%d/%d: %s/%s, lag %s, writer %s", label, pp.Partition, n, pp.Checkpoint, head, lag, holderOrNone(pp.Holder))
}

func holderOrNone(h string) string {
	if h == "" {
		return "none"
	}
	return h
}

// finish ends the bar and, after a rebuild, prints how long it took.
func (v *progressView) finish(rebuilt bool) {
	if v.bar != nil {
		_ = v.bar.Finish()
		fmt.Fprintln(v.out)
	}
	if rebuilt && v.mode != modeNone && v.seen {
		d := time.Since(v.started)
		n := v.last.Checkpoint.Commit - min(v.first.Checkpoint.Commit, v.last.Checkpoint.Commit)
		fmt.Fprintf(v.out, "%s: %d events in %s (%.0f events/s)\n", v.label, n, roundDuration(d), float64(n)/d.Seconds())
	}
}

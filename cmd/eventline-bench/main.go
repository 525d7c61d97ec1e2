package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "eventline-bench:", err)
		os.Exit(1)
	}
}

// runMain parses args, runs the benchmark and prints the table to stdout;
// progress and logs go to stderr.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eventline-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		quick    = fs.Bool("quick", false, "small sizes for CI smoke runs: well under a minute on 2 cores")
		tiny     = fs.Bool("tiny", false, "smallest sizes, for the command's own test (hidden)")
		asJSON   = fs.Bool("json", false, "print the rows as JSON instead of a table")
		redisURL = fs.String("redis-url", "", "Redis to use (its database must be empty); default: start a private redis-server on a free port")
		cpuprof  = fs.String("cpuprofile", "", "write a CPU profile of the phase named by --profile-phase to this file")
		phase    = fs.String("profile-phase", defaultProfiled, "phase to profile: "+strings.Join(phases, ", "))
		carts    = fs.Int("carts", 0, "carts in the command workload at 64 callers (0: the mode's size); the 1-caller rows use at most this many")
		events   = fs.Int("events", 0, "events of the synthetic catch-up and the rebuild (0: the mode's size)")
		verbose  = fs.Bool("v", false, "log the framework's warnings and info to stderr")
		only     = fs.String("phases", "", "comma-separated phases to run (default all): "+strings.Join(phases, ", ")+"; the Redis HSET ceiling and the command workload the read phases need always run")
	)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: eventline-bench [--quick] [--json] [--redis-url URL] [--cpuprofile FILE --profile-phase PHASE]\n\n")
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name == "tiny" {
				return
			}
			def := ""
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				def = " (default " + f.DefValue + ")"
			}
			fmt.Fprintf(fs.Output(), "  --%s\n    \t%s%s\n", f.Name, f.Usage, def)
		})
	}
	err := fs.Parse(args)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	mode := "full"
	switch {
	case *tiny:
		mode = "tiny"
	case *quick:
		mode = "quick"
	}
	if !slices.Contains(phases, *phase) {
		return fmt.Errorf("--profile-phase %q: want one of %s", *phase, strings.Join(phases, ", "))
	}
	cfg := presets[mode]
	if cfg.Phases, err = parsePhases(*only); err != nil {
		return err
	}
	cfg.Mode, cfg.RedisURL, cfg.CPUProfile, cfg.ProfilePhase, cfg.Progress = mode, *redisURL, *cpuprof, *phase, stderr
	if *carts > 0 {
		cfg.Carts = *carts
	}
	if *events > 0 {
		cfg.SyntheticEvents, cfg.RebuildEvents = *events, *events
	}
	level := slog.LevelError
	if *verbose {
		level = slog.LevelInfo
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	rep, err := run(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		return rep.writeJSON(stdout)
	}
	return rep.writeText(stdout)
}

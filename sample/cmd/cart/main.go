// Command cart is the sample shopping-cart application of eventline. One
// binary, several roles:
//
//	cart serve         everything in one process (SQLite + embedded Redis)
//	cart command-api   the write side: the command HTTP API
//	cart projector     the projection runners, from the event store into Redis
//	cart query-api     the read side: the query HTTP API over Redis only
//	cart saga          the order/credit saga, fed by a relay over Redis Streams
//	cart replay        rebuild projections beside the live version (projection/cli)
//	cart status        projection checkpoints, lag and state (projection/cli)
//
// Run "cart <role> --help" for each role's flags; every flag has an
// EVENTLINE_* environment variable equivalent. See docs/sample.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/eventline/eventline/sample/app"
)

// Exit codes.
const (
	exitFailure = 1 // the role failed while running
	exitUsage   = 2 // a missing or wrong setting or flag
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "cart:", err)
	if _, ok := errors.AsType[*app.SettingError](err); ok {
		return exitUsage
	}
	if _, ok := errors.AsType[*roleError](err); ok {
		return exitFailure
	}
	// Anything else is cobra refusing the command line: an unknown command,
	// flag or argument.
	return exitUsage
}

// roleError is an error a role returned while running.
type roleError struct{ err error }

func (e *roleError) Error() string { return e.err.Error() }
func (e *roleError) Unwrap() error { return e.err }

// asRoleError marks err as a failure of the running role.
func asRoleError(err error) error {
	if err == nil {
		return nil
	}
	return &roleError{err}
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "cart",
		Short: "The eventline sample shopping cart: one binary, several roles",
		Long: `cart runs the eventline sample shopping-cart application.

"cart serve" runs everything in one process on a SQLite file and an embedded
Redis. The other roles split the same code into processes that scale and
fail separately. Every flag has an EVENTLINE_* environment variable.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	short := map[app.Role]string{
		app.RoleServe:      "Run everything in one process: SQLite, embedded Redis, command and query APIs, projectors",
		app.RoleCommandAPI: "Run the command API (the write side) over the event store",
		app.RoleProjector:  "Run the projection runners, from the event store into Redis",
		app.RoleQueryAPI:   "Run the query API (the read side) over Redis only",
		app.RoleSaga:       "Run the order/credit saga and its relay over Redis Streams",
	}
	for _, role := range app.Roles() {
		var cfg app.Config
		cmd := &cobra.Command{
			Use:   string(role),
			Short: short[role],
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				cfg.Stdout = cmd.OutOrStdout()
				return asRoleError(app.Run(cmd.Context(), role, cfg))
			},
		}
		cfg.BindFlags(cmd.Flags(), role)
		root.AddCommand(cmd)
	}
	root.AddCommand(chaosCommand())
	for _, c := range extraCommands() {
		root.AddCommand(c)
	}
	return root
}

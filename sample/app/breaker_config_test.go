package app

import (
	"errors"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/eventline/eventline/breaker"
)

func TestBreakerSettings(t *testing.T) {
	bind := func(args ...string) (Config, error) {
		var c Config
		fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
		c.BindFlags(fs, RoleCommandAPI)
		if err := fs.Parse(args); err != nil {
			return c, err
		}
		c.StoreURL = "events.db"
		return c, c.Validate(RoleCommandAPI)
	}
	c, err := bind()
	if err != nil || c.BreakerFailures != breaker.DefaultFailures || c.BreakerOpenFor != breaker.DefaultOpenFor || c.StoreTimeout != 5*time.Second {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	if c, err = bind("--breaker-failures=2", "--breaker-open-for=250ms", "--store-timeout=1s"); err != nil ||
		c.BreakerFailures != 2 || c.BreakerOpenFor != 250*time.Millisecond || c.StoreTimeout != time.Second {
		t.Fatalf("flags: %+v, %v", c, err)
	}
	for env, want := range map[string]string{
		EnvBreakerFailures: "breaker-failures", EnvBreakerOpenFor: "breaker-open-for", EnvStoreTimeout: "store-timeout",
	} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, "soon")
			_, err := bind()
			var se *SettingError
			if !errors.As(err, &se) || se.Flag != want || se.Env != env {
				t.Fatalf("%s=soon: %v, want a SettingError naming --%s", env, err, want)
			}
		})
	}
}

package app

import (
	"errors"
	"testing"

	"github.com/spf13/pflag"

	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/sample/readmodel/schema"
)

func TestCartsPartitionsSetting(t *testing.T) {
	bind := func(role Role, args ...string) (Config, error) {
		var c Config
		fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
		c.BindFlags(fs, role)
		if err := fs.Parse(args); err != nil {
			return c, err
		}
		c.StoreURL, c.RedisURL = "events.db", "redis://localhost:6379"
		return c, c.Validate(role)
	}
	c, err := bind(RoleProjector)
	if err != nil || c.CartsPartitions != DefaultCartsPartitions {
		t.Fatalf("default: %d, %v", c.CartsPartitions, err)
	}
	if c, err = bind(RoleProjector, "--carts-partitions=4"); err != nil || c.CartsPartitions != 4 {
		t.Fatalf("--carts-partitions=4: %d, %v", c.CartsPartitions, err)
	}
	t.Setenv(EnvCartsPartitions, "8")
	if c, err = bind(RoleServe); err != nil || c.CartsPartitions != 8 {
		t.Fatalf("%s=8: %d, %v", EnvCartsPartitions, c.CartsPartitions, err)
	}
	// query-api learns the count from Redis: no such flag.
	if _, err = bind(RoleQueryAPI, "--carts-partitions=4"); err == nil {
		t.Fatal("query-api accepted --carts-partitions")
	}
	for _, bad := range []string{"many", "-1", "100000"} {
		t.Setenv(EnvCartsPartitions, bad)
		_, err := bind(RoleProjector)
		var se *SettingError
		if !errors.As(err, &se) || se.Flag != "carts-partitions" || se.Env != EnvCartsPartitions {
			t.Fatalf("%s=%s: %v, want a SettingError naming --carts-partitions", EnvCartsPartitions, bad, err)
		}
	}

	// The projections the roles run: carts at the version of its count,
	// partitioned by cart id; the others unchanged.
	for _, n := range []int{1, 4} {
		for _, p := range ProjectionsWith(n) {
			pp, ok := p.(projection.Partitioner)
			switch {
			case p.Name() == schema.Carts && n == 1 && (ok || p.Version() != schema.CartsVersion):
				t.Fatalf("carts unpartitioned: v%d, partitioner %v", p.Version(), ok)
			case p.Name() == schema.Carts && n > 1 && (!ok || pp.Partitions() != n || p.Version() != schema.CartsVersionFor(n)):
				t.Fatalf("carts in %d partitions: v%d, partitioner %v", n, p.Version(), ok)
			case p.Name() != schema.Carts && ok:
				t.Fatalf("%s is partitioned", p.Name())
			}
		}
	}
}

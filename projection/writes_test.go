package projection

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/internal/redistest"
)

// writeOp is one write of the property test, applied either as its own
// command or through the Tx helpers.
type writeOp struct {
	cmd    string // hset, hsetnx, hincrby, hdel, zincrby, zaddnx, del, rawhset
	key    string
	field  string
	val    string
	n      int64
	fields []string
}

func randomOps(rng *rand.Rand, n int) []writeOp {
	hashes, zsets := []string{"h1", "h2", "x"}, []string{"z1", "z2", "x"}
	fields := []string{"f1", "f2", "f3"}
	vals := []string{"0", "1", "7", "-3", "x"}
	ops := make([]writeOp, 0, n)
	for range n {
		f := fields[rng.IntN(len(fields))]
		switch rng.IntN(9) {
		case 0:
			ops = append(ops, writeOp{cmd: "hset", key: hashes[rng.IntN(3)], field: f, val: vals[rng.IntN(len(vals))]})
		case 1:
			ops = append(ops, writeOp{cmd: "hsetnx", key: hashes[rng.IntN(3)], field: f, val: vals[rng.IntN(len(vals))]})
		case 2, 3:
			ops = append(ops, writeOp{cmd: "hincrby", key: hashes[rng.IntN(3)], field: f, n: rng.Int64N(9) - 4})
		case 4:
			ops = append(ops, writeOp{cmd: "hdel", key: hashes[rng.IntN(3)], fields: []string{f, fields[rng.IntN(len(fields))]}})
		case 5:
			ops = append(ops, writeOp{cmd: "zincrby", key: zsets[rng.IntN(3)], field: f, n: rng.Int64N(9) - 4})
		case 6:
			ops = append(ops, writeOp{cmd: "zaddnx", key: zsets[rng.IntN(3)], field: f, n: rng.Int64N(9) - 4})
		case 7:
			ops = append(ops, writeOp{cmd: "del", key: append(hashes, zsets...)[rng.IntN(6)]})
		default:
			ops = append(ops, writeOp{cmd: "rawhset", key: hashes[rng.IntN(3)], field: f, val: vals[rng.IntN(len(vals))]})
		}
	}
	return ops
}

// direct applies op as its own command; errors (WRONGTYPE, not an integer)
// are what Redis makes of the sequence, and are ignored like the state they
// leave is compared.
func (op writeOp) direct(ctx context.Context, c redis.Cmdable, prefix string) {
	k := prefix + op.key
	switch op.cmd {
	case "hset", "rawhset":
		c.HSet(ctx, k, op.field, op.val)
	case "hsetnx":
		c.HSetNX(ctx, k, op.field, op.val)
	case "hincrby":
		c.HIncrBy(ctx, k, op.field, op.n)
	case "hdel":
		c.HDel(ctx, k, op.fields...)
	case "zincrby":
		c.ZIncrBy(ctx, k, float64(op.n), op.field)
	case "zaddnx":
		c.ZAddNX(ctx, k, redis.Z{Score: float64(op.n), Member: op.field})
	case "del":
		c.Del(ctx, k)
	}
}

func (op writeOp) helper(ctx context.Context, tx *Tx, prefix string) error {
	k := prefix + op.key
	switch op.cmd {
	case "hset":
		return tx.HSet(ctx, k, op.field, op.val)
	case "rawhset":
		tx.Pipe().HSet(ctx, k, op.field, op.val)
	case "hsetnx":
		return tx.HSetNX(ctx, k, op.field, op.val)
	case "hincrby":
		tx.HIncrBy(ctx, k, op.field, op.n)
	case "hdel":
		tx.HDel(ctx, k, op.fields...)
	case "zincrby":
		tx.ZIncrBy(ctx, k, float64(op.n), op.field)
	case "zaddnx":
		tx.ZAddNX(ctx, k, float64(op.n), op.field)
	case "del":
		tx.Del(ctx, k)
	}
	return nil
}

// dumpKeys describes the keys of the test under prefix: type and content.
func dumpKeys(ctx context.Context, t *testing.T, c *redis.Client, prefix string) string {
	t.Helper()
	var out string
	for _, key := range []string{"h1", "h2", "z1", "z2", "x"} {
		k := prefix + key
		typ, err := c.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		out += key + ":" + typ + "="
		switch typ {
		case "hash":
			m, err := c.HGetAll(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			names := make([]string, 0, len(m))
			for f := range m {
				names = append(names, f)
			}
			slices.Sort(names)
			for _, f := range names {
				out += f + ":" + m[f] + ","
			}
		case "zset":
			zs, err := c.ZRangeWithScores(ctx, k, 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, z := range zs {
				out += fmt.Sprintf("%v:%v,", z.Member, z.Score)
			}
		}
		out += " "
	}
	return out
}

// TestTxWritesMergeLikeCommands applies random sequences of writes once as
// one command each and once through the Tx helpers inside MULTI/EXEC, from
// the same random starting state, and compares every key afterwards.
func TestTxWritesMergeLikeCommands(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rng := rand.New(rand.NewPCG(7, 21))
	merged := 0
	for round := range 400 {
		if err := rdb.FlushDB(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		// The same starting state under both prefixes: keys that existed
		// before the batch, which the helpers cannot know.
		start := randomOps(rng, rng.IntN(6))
		for _, op := range start {
			op.direct(ctx, rdb, "a:")
			op.direct(ctx, rdb, "b:")
		}
		ops := randomOps(rng, 1+rng.IntN(25))
		for _, op := range ops {
			op.direct(ctx, rdb, "a:")
		}
		pipe := rdb.TxPipeline()
		tx := &Tx{pipe: pipe}
		for _, op := range ops {
			if err := op.helper(ctx, tx, "b:"); err != nil {
				t.Fatal(err)
			}
		}
		tx.flush(ctx)
		if pipe.Len() < len(ops) {
			merged++
		}
		// A command Redis refuses (WRONGTYPE, not an integer) fails inside
		// EXEC as it failed on its own; the states are compared.
		var rerr redis.Error
		if _, err := pipe.Exec(ctx); err != nil && !errors.As(err, &rerr) {
			t.Fatal(err)
		}
		want, got := dumpKeys(ctx, t, rdb, "a:"), dumpKeys(ctx, t, rdb, "b:")
		if want != got {
			t.Fatalf("round %d: start %+v\nops %+v\none command each: %s\nthrough Tx:       %s", round, start, ops, want, got)
		}
	}
	if merged < 100 {
		t.Errorf("only %d of 400 batches sent fewer commands than writes", merged)
	}
}

// TestTxWritesCartInTwoCommands checks the case the helpers are for: an
// entity created and changed in one batch costs DEL and one HSET, whatever
// HINCRBY and HSETNX its events use.
func TestTxWritesCartInTwoCommands(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	pipe := rdb.TxPipeline()
	tx := &Tx{pipe: pipe}
	k := "cart:1"
	tx.Del(ctx, k)
	must(t, tx.HSet(ctx, k, "version", 1, "status", "open"))
	for i := range 5 {
		p := "p" + strconv.Itoa(i%3)
		must(t, tx.HSet(ctx, k, "version", i+2))
		tx.HIncrBy(ctx, k, "q:"+p, 2)
		must(t, tx.HSetNX(ctx, k, "price:"+p, 100+i))
		must(t, tx.HSetNX(ctx, k, "first:"+p, i+2))
	}
	must(t, tx.HSet(ctx, k, "version", 7, "status", "checked_out"))
	tx.flush(ctx)
	if n := pipe.Len(); n != 2 {
		t.Errorf("%d commands queued, want 2 (DEL, HSET)", n)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := rdb.HGetAll(ctx, k).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"version": "7", "status": "checked_out",
		"q:p0": "4", "q:p1": "4", "q:p2": "2", "price:p0": "100", "price:p1": "101", "price:p2": "102",
		"first:p0": "2", "first:p1": "3", "first:p2": "4"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("cart %v, want %v", got, want)
	}
}

// TestTxWritesRefuseBadArguments: what go-redis could not send is an error
// at the call, not a broken batch.
func TestTxWritesRefuseBadArguments(t *testing.T) {
	ctx := context.Background()
	tx := &Tx{}
	for name, err := range map[string]error{
		"odd":       tx.HSet(ctx, "k", "f"),
		"field":     tx.HSet(ctx, "k", 1, "v"),
		"value":     tx.HSet(ctx, "k", "f", struct{}{}),
		"nx value":  tx.HSetNX(ctx, "k", "f", []int{1}),
		"nil value": tx.HSetNX(ctx, "k", "f", map[string]int{}),
	} {
		if !errors.Is(err, ErrInvalidWrite) {
			t.Errorf("%s: %v, want ErrInvalidWrite", name, err)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

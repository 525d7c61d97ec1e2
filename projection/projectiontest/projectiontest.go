package projectiontest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/eventline/eventline/eventstore"
	"github.com/eventline/eventline/projection"
	"github.com/eventline/eventline/projection/internal/replay"
	"github.com/eventline/eventline/query"
)

// Model is a read model as Check compares it: each key, without the
// build's prefix (the parts given to projection.Tx.Key joined with ':'),
// mapped to its value by Redis type:
//
//	string  string
//	hash    map[string]string
//	list    []string, in list order
//	set     Set (members, sorted)
//	zset    ZSet (member → score)
//
// The build's bookkeeping keys (checkpoint, lease, status, dead letters,
// retries) are not part of it.
type Model map[string]any

// Set is the value of a Redis set in a Model; Check sorts it.
type Set []string

// ZSet is the value of a Redis sorted set in a Model.
type ZSet map[string]float64

// Case is one scenario of a projection: the records it applies, in log
// order, and the model they must produce from an empty one.
type Case struct {
	// Name says what the case is about; it heads every reported difference.
	Name string
	// Records are applied in this order. A record without a Position gets
	// its index + 1, and one without a Version the count of the records of
	// its stream so far, so a case may list bare events with a StreamID.
	Records []eventstore.Record
	// Want is the model the records must produce.
	Want Model
	// OnceOnly skips the second pass over the records. Set it for a
	// projection that counts (Tx.HIncrBy, Tx.ZIncrBy) and so relies on the
	// runner applying each record exactly once, which the checkpoint in the
	// batch's transaction guarantees; batch independence is still checked.
	OnceOnly bool
}

// BatchSizes are the batch sizes every case is applied with: one record per
// batch, two, and all of them in one. A projection whose model depends on
// how records are batched (a value read with Tx.Read and not kept in Tx.Memo
// for the rest of the batch, say) fails one of them.
var BatchSizes = []int{1, 2, 0} // 0: all records in one batch

// Run checks p against each case with Check and reports every difference
// through t.Errorf, one error per case. rdb is a Redis the test may write
// to; Check removes what it wrote. Use Miniredis for a zero-config one.
func Run(t testing.TB, rdb redis.UniversalClient, p projection.Projection, cases ...Case) {
	t.Helper()
	ctx := context.Background()
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, dl)
			defer cancel()
		}
	}
	for _, c := range cases {
		if err := Check(ctx, rdb, p, c); err != nil {
			t.Errorf("%v", err)
		}
	}
}

// ErrMismatch means a model differed from the one a Case wants.
var ErrMismatch = errors.New("projectiontest: model differs")

// Check applies c.Records to p on rdb and compares the model with c.Want,
// once per size of BatchSizes, each time into a build of its own, fresh:
// first the records once, then all of them a second time over the result,
// which must leave the model as it is. The runner applies a record once,
// but a projection that cannot take a record twice breaks as soon as an
// operator retries a dead letter or a crash test replays a batch; a model
// that depends on the batch size breaks under load. It returns nil when
// every model matched, an error matching ErrMismatch with a readable
// difference (key by key, "-" wanted, "+" got) when one did not, or the
// error that stopped it (Apply failed, Redis failed). It removes the keys
// it wrote, so run it against a Redis (or a database) no runner of p
// writes to.
func Check(ctx context.Context, rdb redis.UniversalClient, p projection.Projection, c Case) error {
	if err := projection.Validate(p); err != nil {
		return fmt.Errorf("projectiontest: %s: %w", c.Name, err)
	}
	recs := normalize(c.Records)
	var diffs []string
	for i, size := range BatchSizes {
		// Generations well above any a test would make, one per run.
		b := query.Build{Version: p.Version(), Generation: 9000 + i}
		label := "all records in one batch"
		if size > 0 {
			label = "batches of " + strconv.Itoa(size)
		}
		err := func() error {
			defer remove(context.WithoutCancel(ctx), rdb, p.Name(), b)
			passes := []string{"applied once", "applied twice"}
			if c.OnceOnly {
				passes = passes[:1]
			}
			for pass, what := range passes {
				if err := apply(ctx, rdb, p, b, recs, size); err != nil {
					return fmt.Errorf("projectiontest: %s (%s, pass %d): %w", c.Name, label, pass+1, err)
				}
				got, err := ReadModel(ctx, rdb, p.Name(), b)
				if err != nil {
					return fmt.Errorf("projectiontest: %s: %w", c.Name, err)
				}
				if d := Diff(c.Want, got); d != "" {
					diffs = append(diffs, fmt.Sprintf("%s, %s (- want, + got):\n%s", label, what, d))
					return nil // the second pass would only repeat it
				}
			}
			return nil
		}()
		if err != nil {
			return err
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%w: %s: %s:\n%s", ErrMismatch, p.Name(), c.Name, strings.Join(diffs, "\n"))
	}
	return nil
}

// normalize fills the positions and versions a case left out.
func normalize(in []eventstore.Record) []eventstore.Record {
	out := slices.Clone(in)
	versions := map[string]uint64{}
	for i := range out {
		versions[out[i].StreamID]++
		if out[i].Position.IsZero() {
			out[i].Position = eventstore.SeqPosition(uint64(i + 1))
		}
		if out[i].Version == 0 {
			out[i].Version = versions[out[i].StreamID]
		}
	}
	return out
}

// apply applies recs in batches of size (0: one batch).
func apply(ctx context.Context, rdb redis.UniversalClient, p projection.Projection, b query.Build, recs []eventstore.Record, size int) error {
	if size <= 0 {
		size = max(len(recs), 1)
	}
	for batch := range slices.Chunk(recs, size) {
		if err := replay.Batch(ctx, rdb, p, b, batch); err != nil {
			return err
		}
	}
	return nil
}

// bookkeeping are the suffixes of a build's keys that are not its model.
var bookkeeping = []string{"checkpoint", "lease", "status", "deadletter", "retry"}

// ReadModel reads every model key of build b of projection name: the keys
// under query.Prefix(name, b) except the build's bookkeeping keys.
func ReadModel(ctx context.Context, rdb redis.UniversalClient, name string, b query.Build) (Model, error) {
	prefix := query.Prefix(name, b)
	keys, err := scan(ctx, rdb, prefix)
	if err != nil {
		return nil, err
	}
	m := Model{}
	for _, k := range keys {
		rel := strings.TrimPrefix(k, prefix)
		if slices.Contains(bookkeeping, rel) {
			continue
		}
		typ, err := rdb.Type(ctx, k).Result()
		if err != nil {
			return nil, fmt.Errorf("TYPE %s: %w", k, err)
		}
		var v any
		switch typ {
		case "string":
			v, err = rdb.Get(ctx, k).Result()
		case "hash":
			v, err = rdb.HGetAll(ctx, k).Result()
		case "list":
			v, err = rdb.LRange(ctx, k, 0, -1).Result()
		case "set":
			var s []string
			s, err = rdb.SMembers(ctx, k).Result()
			slices.Sort(s)
			v = Set(s)
		case "zset":
			var zs []redis.Z
			zs, err = rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
			z := ZSet{}
			for _, e := range zs {
				z[fmt.Sprint(e.Member)] = e.Score
			}
			v = z
		case "none":
			continue // removed since the scan
		default:
			return nil, fmt.Errorf("key %s: Redis type %s is not supported by Model", k, typ)
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", k, err)
		}
		m[rel] = v
	}
	return m, nil
}

func scan(ctx context.Context, rdb redis.UniversalClient, prefix string) ([]string, error) {
	var keys []string
	var cursor uint64
	for {
		ks, next, err := rdb.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return nil, fmt.Errorf("SCAN %s*: %w", prefix, err)
		}
		keys = append(keys, ks...)
		if cursor = next; cursor == 0 {
			slices.Sort(keys)
			return slices.Compact(keys), nil
		}
	}
}

// remove deletes every key of build b, best effort.
func remove(ctx context.Context, rdb redis.UniversalClient, name string, b query.Build) {
	keys, err := scan(ctx, rdb, query.Prefix(name, b))
	if err == nil && len(keys) > 0 {
		_ = rdb.Del(ctx, keys...).Err()
	}
}

// Diff returns the differences between two models, one line per key that
// differs ("- key: wanted", "+ key: got"), sorted by key; "" when they are
// equal. Sets compare without order; values compare by their Model type, so
// a hash written with HSET of an int compares with its decimal string.
func Diff(want, got Model) string {
	var sb strings.Builder
	for _, k := range slices.Sorted(maps.Keys(merge(want, got))) {
		w, inW := want[k]
		g, inG := got[k]
		w, g = canonical(w), canonical(g)
		switch {
		case inW && !inG:
			fmt.Fprintf(&sb, "- %s: %s\n", k, show(w))
			fmt.Fprintf(&sb, "+ %s: (missing)\n", k)
		case !inW && inG:
			fmt.Fprintf(&sb, "- %s: (missing)\n", k)
			fmt.Fprintf(&sb, "+ %s: %s\n", k, show(g))
		case !reflect.DeepEqual(w, g):
			fmt.Fprintf(&sb, "- %s: %s\n", k, show(w))
			fmt.Fprintf(&sb, "+ %s: %s\n", k, show(g))
		}
	}
	return sb.String()
}

func merge(a, b Model) Model {
	m := maps.Clone(a)
	if m == nil {
		m = Model{}
	}
	maps.Copy(m, b)
	return m
}

// canonical turns the value types a test may write into Model's.
func canonical(v any) any {
	switch x := v.(type) {
	case Set:
		s := slices.Clone(x)
		slices.Sort(s)
		return Set(s)
	case map[string]any:
		h := make(map[string]string, len(x))
		for k, e := range x {
			h[k] = fmt.Sprint(e)
		}
		return h
	case int, int64, uint64, float64:
		return fmt.Sprint(x)
	}
	return v
}

// show prints a value with maps sorted by key (fmt does that), quoted
// strings so that spaces and empty strings are visible.
func show(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case map[string]string:
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(x)) {
			parts = append(parts, k+"="+strconv.Quote(x[k]))
		}
		return "hash{" + strings.Join(parts, " ") + "}"
	case Set:
		return fmt.Sprintf("set%q", []string(x))
	case []string:
		return fmt.Sprintf("list%q", x)
	case ZSet:
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(x)) {
			parts = append(parts, k+"="+strconv.FormatFloat(x[k], 'g', -1, 64))
		}
		return "zset{" + strings.Join(parts, " ") + "}"
	}
	return fmt.Sprintf("%#v", v)
}

// Miniredis returns a client of an in-process Redis (miniredis) that lives
// as long as the test: the zero-config choice. A real redis-server is the
// closer check (scripts, commands miniredis lacks); pass its client to Run
// when the test has one.
func Miniredis(t testing.TB) redis.UniversalClient {
	t.Helper()
	srv := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

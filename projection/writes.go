package projection

import (
	"context"
	"encoding"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The write helpers of Tx (HSet, HSetNX, HIncrBy, HDel, ZIncrBy, ZAddNX,
// Del) do not queue a command per call: they merge the batch's writes per
// key and field, and the batch sends what is left, once, before its
// checkpoint. A cart's seven events in one batch then cost two commands (DEL
// and one HSET) rather than twenty, and Redis executes, and the client
// encodes and parses, a fraction of the commands. Writes to different keys
// commute, so merging per key keeps the batch's result; writes to one key are
// merged only where the result is the same as applying them in order, and
// otherwise the key's pending writes are queued first.
//
// Once a key was deleted in the batch (Del), its whole content is known, so
// HINCRBY and HSETNX on it become plain values: a model that starts an
// entity with Del writes the entity's whole batch as one HSET.

// ErrInvalidWrite means a write helper of Tx was given arguments Redis
// would refuse: a value go-redis cannot send, field value pairs that do not
// pair up.
var ErrInvalidWrite = errors.New("projection: invalid write")

// opKind is what a field's (or a member's) pending writes amount to.
type opKind uint8

const (
	opSet    opKind = iota + 1 // HSET field value / ZADD score member
	opSetNX                    // HSETNX / ZADD NX
	opIncr                     // HINCRBY / ZINCRBY
	opDelete                   // HDEL / ZREM
)

// keyKind is the Redis type a key's pending writes are for.
type keyKind uint8

const (
	kindNone keyKind = iota // only deleted so far
	kindHash
	kindZSet
)

// fieldOp is the net effect of a batch's writes to one field of a hash or
// one member of a sorted set.
type fieldOp struct {
	name string
	kind opKind
	// val is the value of opSet and opSetNX on a hash.
	val string
	// n is the increment of opIncr on a hash.
	n int64
	// score is the score or increment on a sorted set.
	score float64
}

// keyWrites is the pending writes of one key.
type keyWrites struct {
	kind keyKind
	// deleted: the batch deletes the key before its other writes, so
	// every field not in ops is absent.
	deleted bool
	// ops holds the fields' pending ops in the order of their first
	// write, in one slice rather than an allocation per field: an entity
	// has a few dozen fields, found by a linear search until there are
	// more than indexFields, then through index.
	ops   []fieldOp
	index map[string]int
}

// indexFields is how many fields of a key are searched linearly before
// keyWrites indexes them.
const indexFields = 32

// writes is a batch's pending writes, keys in the order of their first
// write.
type writes struct {
	keys  map[string]*keyWrites
	order []string
}

// ctxOf remembers the first context a helper was called with, for the
// commands that Pipe queues on its behalf.
func (tx *Tx) ctxOf(ctx context.Context) context.Context {
	if tx.ctx == nil {
		tx.ctx = ctx
	}
	return tx.ctx
}

// key returns the pending writes of key as kind, queuing first what is
// pending for it as another kind (a key reused as another type).
func (tx *Tx) key(ctx context.Context, key string, kind keyKind) *keyWrites {
	tx.ctxOf(ctx)
	if tx.w.keys == nil {
		tx.w.keys = map[string]*keyWrites{}
	}
	k := tx.w.keys[key]
	switch {
	case k == nil:
		k = &keyWrites{kind: kind}
		tx.w.keys[key] = k
		tx.w.order = append(tx.w.order, key)
	case k.kind == kindNone:
		k.kind = kind
	case k.kind != kind:
		tx.flushKey(ctx, key, k)
		k.kind = kind
	}
	return k
}

// field returns the pending op of field, nil if none. The pointer is valid
// until the next put or reset.
func (k *keyWrites) field(name string) *fieldOp {
	if k.index != nil {
		if i, ok := k.index[name]; ok {
			return &k.ops[i]
		}
		return nil
	}
	for i := range k.ops {
		if k.ops[i].name == name {
			return &k.ops[i]
		}
	}
	return nil
}

// put sets field's pending op.
func (k *keyWrites) put(name string, op fieldOp) { k.set(k.field(name), name, op) }

// set sets the pending op of field name, which is f (nil when the field has
// none yet: k.field(name) as the caller found it).
func (k *keyWrites) set(f *fieldOp, name string, op fieldOp) {
	op.name = name
	if f != nil {
		*f = op
		return
	}
	k.ops = append(k.ops, op)
	switch {
	case k.index != nil:
		k.index[name] = len(k.ops) - 1
	case len(k.ops) > indexFields:
		k.index = make(map[string]int, 2*len(k.ops))
		for i := range k.ops {
			k.index[k.ops[i].name] = i
		}
	}
}

// reset leaves k with no pending field, keeping its buffer.
func (k *keyWrites) reset() {
	clear(k.ops) // drop the strings for the collector
	k.ops, k.index = k.ops[:0], nil
}

// HSet queues HSET key field value [field value ...], merged with the
// batch's other writes to key. Values are formatted as go-redis formats
// command arguments (strings, []byte, integers, floats, bools, time.Time).
// An odd number of arguments, or a field that is not a string, is an error.
func (tx *Tx) HSet(ctx context.Context, key string, fieldsAndValues ...any) error {
	if len(fieldsAndValues)%2 != 0 {
		return fmt.Errorf("%w: HSET %s: %d arguments, want field value pairs", ErrInvalidWrite, key, len(fieldsAndValues))
	}
	k := tx.key(ctx, key, kindHash)
	for i := 0; i < len(fieldsAndValues); i += 2 {
		f, ok := fieldsAndValues[i].(string)
		if !ok {
			return fmt.Errorf("%w: HSET %s: field %v is a %T, want a string", ErrInvalidWrite, key, fieldsAndValues[i], fieldsAndValues[i])
		}
		v, err := argString(fieldsAndValues[i+1])
		if err != nil {
			return fmt.Errorf("HSET %s %s: %w", key, f, err)
		}
		k.put(f, fieldOp{kind: opSet, val: v})
	}
	return nil
}

// HSetNX queues HSETNX key field value, merged with the batch's other writes
// to key: it sets field only if field has no value. A value go-redis cannot
// send is an error matching ErrInvalidWrite.
func (tx *Tx) HSetNX(ctx context.Context, key, field string, value any) error {
	v, err := argString(value)
	if err != nil {
		return fmt.Errorf("HSETNX %s %s: %w", key, field, err)
	}
	k := tx.key(ctx, key, kindHash)
	switch f := k.field(field); {
	case f == nil && k.deleted, f != nil && f.kind == opDelete:
		k.set(f, field, fieldOp{kind: opSet, val: v})
	case f == nil:
		k.set(f, field, fieldOp{kind: opSetNX, val: v})
	default:
		// opSet, opSetNX or opIncr: the field has a value by then.
	}
	return nil
}

// HIncrBy queues HINCRBY key field n, merged with the batch's other writes
// to key.
func (tx *Tx) HIncrBy(ctx context.Context, key, field string, n int64) {
	k := tx.key(ctx, key, kindHash)
	switch f := k.field(field); {
	case f == nil && k.deleted, f != nil && f.kind == opDelete:
		k.set(f, field, fieldOp{kind: opSet, val: strconv.FormatInt(n, 10)})
	case f == nil:
		k.set(f, field, fieldOp{kind: opIncr, n: n})
	case f.kind == opIncr && !overflows(f.n, n):
		f.n += n
	case f.kind == opSet:
		if v, err := strconv.ParseInt(f.val, 10, 64); err == nil && !overflows(v, n) {
			f.val = strconv.FormatInt(v+n, 10)
			return
		}
		// Redis decides (and fails the command) on a value that is not an
		// integer: send what is pending first.
		tx.flushKey(ctx, key, k)
		k.put(field, fieldOp{kind: opIncr, n: n})
	default: // opSetNX: the result depends on whether the field existed.
		tx.flushKey(ctx, key, k)
		k.put(field, fieldOp{kind: opIncr, n: n})
	}
}

// overflows reports whether v+n overflows an int64, which HINCRBY refuses.
func overflows(v, n int64) bool { return (n > 0 && v > (1<<63-1)-n) || (n < 0 && v < (-1<<63)-n) }

// HDel queues HDEL key field [field ...], merged with the batch's other
// writes to key.
func (tx *Tx) HDel(ctx context.Context, key string, fields ...string) {
	k := tx.key(ctx, key, kindHash)
	for _, f := range fields {
		k.put(f, fieldOp{kind: opDelete})
	}
}

// ZIncrBy queues ZINCRBY key n member, merged with the batch's other writes
// to key.
func (tx *Tx) ZIncrBy(ctx context.Context, key string, n float64, member string) {
	k := tx.key(ctx, key, kindZSet)
	switch f := k.field(member); {
	case f == nil && k.deleted, f != nil && f.kind == opDelete:
		k.set(f, member, fieldOp{kind: opSet, score: n})
	case f == nil:
		k.set(f, member, fieldOp{kind: opIncr, score: n})
	case f.kind == opIncr, f.kind == opSet:
		f.score += n
	default: // opSetNX: the result depends on whether the member existed.
		tx.flushKey(ctx, key, k)
		k.put(member, fieldOp{kind: opIncr, score: n})
	}
}

// ZAddNX queues ZADD key NX score member, merged with the batch's other
// writes to key: it adds member only if it is not in the set.
func (tx *Tx) ZAddNX(ctx context.Context, key string, score float64, member string) {
	k := tx.key(ctx, key, kindZSet)
	switch f := k.field(member); {
	case f == nil && k.deleted, f != nil && f.kind == opDelete:
		k.set(f, member, fieldOp{kind: opSet, score: score})
	case f == nil:
		k.set(f, member, fieldOp{kind: opSetNX, score: score})
	}
}

// Del queues DEL key, dropping the batch's earlier writes to it. After Del
// the key's whole content is known, so later HIncrBy, HSetNX, ZIncrBy and
// ZAddNX on it are sent as plain values.
func (tx *Tx) Del(ctx context.Context, key string) {
	k := tx.key(ctx, key, kindNone)
	k.kind, k.deleted = kindNone, true
	k.reset()
}

// flush queues every pending write on the pipeline. The runner calls it
// before the checkpoint; Pipe calls it so that commands queued directly come
// after the helpers' writes.
func (tx *Tx) flush(ctx context.Context) {
	for _, key := range tx.w.order {
		tx.flushKey(ctx, key, tx.w.keys[key])
	}
	tx.w.keys, tx.w.order = nil, nil
}

// flushKey queues the pending writes of key and leaves it with none.
func (tx *Tx) flushKey(ctx context.Context, key string, k *keyWrites) {
	p := tx.pipe
	if k.deleted {
		p.Del(ctx, key)
	}
	switch k.kind {
	case kindHash:
		// HSET's arguments are built here, in one slice handed to Do, not
		// copied again by the HSet method: it is the bulk of a batch.
		var set []any
		var del []string
		for i := range k.ops {
			switch f := &k.ops[i]; f.kind {
			case opSet:
				if set == nil {
					set = make([]any, 0, 2+2*len(k.ops))
					set = append(set, "hset", key)
				}
				set = append(set, f.name, f.val)
			case opDelete:
				if !k.deleted {
					del = append(del, f.name)
				}
			}
		}
		if len(del) > 0 {
			p.HDel(ctx, key, del...)
		}
		if len(set) > 0 {
			p.Do(ctx, set...)
		}
		for i := range k.ops {
			switch f := &k.ops[i]; f.kind {
			case opSetNX:
				p.HSetNX(ctx, key, f.name, f.val)
			case opIncr:
				p.HIncrBy(ctx, key, f.name, f.n)
			}
		}
	case kindZSet:
		var set, nx []redis.Z
		var del []any
		for i := range k.ops {
			switch f := &k.ops[i]; f.kind {
			case opSet:
				set = append(set, redis.Z{Score: f.score, Member: f.name})
			case opSetNX:
				nx = append(nx, redis.Z{Score: f.score, Member: f.name})
			case opDelete:
				if !k.deleted {
					del = append(del, f.name)
				}
			}
		}
		if len(del) > 0 {
			p.ZRem(ctx, key, del...)
		}
		if len(set) > 0 {
			p.ZAdd(ctx, key, set...)
		}
		if len(nx) > 0 {
			p.ZAddNX(ctx, key, nx...)
		}
		for i := range k.ops {
			if f := &k.ops[i]; f.kind == opIncr {
				p.ZIncrBy(ctx, key, f.score, f.name)
			}
		}
	}
	k.deleted = false
	k.reset()
}

// argString formats v as go-redis sends it as a command argument.
func argString(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case []byte:
		return string(v), nil
	case int:
		return strconv.FormatInt(int64(v), 10), nil
	case int8:
		return strconv.FormatInt(int64(v), 10), nil
	case int16:
		return strconv.FormatInt(int64(v), 10), nil
	case int32:
		return strconv.FormatInt(int64(v), 10), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case uint:
		return strconv.FormatUint(uint64(v), 10), nil
	case uint8:
		return strconv.FormatUint(uint64(v), 10), nil
	case uint16:
		return strconv.FormatUint(uint64(v), 10), nil
	case uint32:
		return strconv.FormatUint(uint64(v), 10), nil
	case uint64:
		return strconv.FormatUint(v, 10), nil
	case float32:
		return strconv.FormatFloat(float64(v), 'f', -1, 32), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case bool:
		if v {
			return "1", nil
		}
		return "0", nil
	case time.Time:
		return v.Format(time.RFC3339Nano), nil
	case nil:
		return "", nil
	case encoding.BinaryMarshaler:
		b, err := v.MarshalBinary()
		return string(b), err
	default:
		return "", fmt.Errorf("%w: a %T value; go-redis sends strings, []byte, numbers, bools, time.Time and encoding.BinaryMarshaler", ErrInvalidWrite, v)
	}
}

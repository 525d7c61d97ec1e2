package query

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxNameLen is the longest projection name, in bytes.
const MaxNameLen = 64

// ValidateName returns an error matching ErrInvalidName unless name is 1 to
// MaxNameLen bytes of [a-z0-9_-]. The alphabet keeps names safe inside Redis
// key names, hash tags, metric labels and command lines.
func ValidateName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w: %q must be 1 to %d bytes", ErrInvalidName, name, MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%w: %q: only a-z, 0-9, '_' and '-' are allowed", ErrInvalidName, name)
		}
	}
	return nil
}

// The key layout of every projection. All keys of an unpartitioned projection,
// across its builds, share the hash tag {el:<name>}, so they live in one Redis
// Cluster slot and one transaction or script can touch any of them. <b> is a
// Build in its String form: "3" for generation 0 of version 3, "3g1" for
// generation 1.
//
//	{el:<name>}:active                 the live build, e.g. "3" or "3g1"
//	{el:<name>}:v<b>:checkpoint        hash: position, commit, prepare, recorded_at, updated_at
//	{el:<name>}:v<b>:lease             hash: the holding of the runner allowed to write build b
//	{el:<name>}:v<b>:status            hash written by the lease holder (state, head, error, ...)
//	{el:<name>}:v<b>:deadletter        list of records set aside by the dead-letter policy
//	{el:<name>}:v<b>:<parts...>        the read model itself
//
// Generation 0 of version n uses the prefix "v<n>:", the layout from before
// generations existed, so existing models keep their keys.
//
// Partitions. A build may be split into N partitions (N fixed per version,
// see projection.Partitioned). With N = 1 the layout above is the whole
// story, byte for byte. With N > 1, partition p (0 ≤ p < N) of the build has
// a hash tag of its own, {el:<name>:p<p>}, so that each partition may live on
// another node of a Redis Cluster, and every per-build key above except the
// active key moves into it:
//
//	{el:<name>}:active                 the live build, for all partitions at once
//	{el:<name>}:partitions             hash: build -> N, for every build with N > 1
//	{el:<name>}:members:<b>            sorted set: the runners sharing the partitions of build b
//	{el:<name>:p<p>}:v<b>:checkpoint   partition p's checkpoint (it moves over every record of the log)
//	{el:<name>:p<p>}:v<b>:lease        the lease of partition p: one writer per partition
//	{el:<name>:p<p>}:v<b>:status       the status written by partition p's lease holder
//	{el:<name>:p<p>}:v<b>:deadletter   partition p's dead letters
//	{el:<name>:p<p>}:v<b>:<parts...>   the read model entries of partition p
//
// A record belongs to partition PartitionOf(key, N) of its partition key,
// the record's stream id unless the projection derives another one. The
// partition function is part of the format: it decides where keys live, and
// readers compute it too (View.KeyFor). Names cannot contain ':', so no
// partition tag is the tag of another projection.

// Build names one build of a projection's read model: its schema Version (the
// code's Projection.Version) and a Generation within that version. A version
// is first built as generation 0; rebuilding the active version from scratch
// without bumping it (projection.RebuildOptions.Force) builds generation g+1
// beside the live generation g, blue/green, under its own keys. The zero Build
// means "none".
type Build struct {
	Version    int
	Generation int
}

// String returns the form stored in the active key and used in key names:
// "3" for version 3 generation 0, "3g1" for generation 1; "" for the zero Build.
func (b Build) String() string {
	switch {
	case b.IsZero():
		return ""
	case b.Generation == 0:
		return strconv.Itoa(b.Version)
	}
	return strconv.Itoa(b.Version) + "g" + strconv.Itoa(b.Generation)
}

// Version returns generation 0 of schema version n: the build a version gets
// when it is first built, and the only one unless it is force-rebuilt.
// Version(0) is the zero Build.
func Version(n int) Build { return Build{Version: n} }

// IsZero reports whether b is the zero Build (no build).
func (b Build) IsZero() bool { return b == Build{} }

// Before reports whether b is older than c: a lower version, or the same
// version and a lower generation.
func (b Build) Before(c Build) bool {
	if b.Version != c.Version {
		return b.Version < c.Version
	}
	return b.Generation < c.Generation
}

// ParseBuild parses the String form of a Build: a positive version, optionally
// followed by "g" and a positive generation. Non-canonical forms ("03", "3g0")
// are refused, so that equal builds have equal strings.
func ParseBuild(s string) (Build, error) {
	vs, gs, hasGen := strings.Cut(s, "g")
	v, err := positive(vs)
	if err != nil {
		return Build{}, fmt.Errorf("query: build %q: version: %w", s, err)
	}
	b := Build{Version: v}
	if hasGen {
		if b.Generation, err = positive(gs); err != nil {
			return Build{}, fmt.Errorf("query: build %q: generation: %w", s, err)
		}
	}
	return b, nil
}

func positive(s string) (int, error) {
	n, err := strconv.Atoi(s)
	switch {
	case err != nil:
		return 0, err
	case n < 1 || strconv.Itoa(n) != s:
		return 0, fmt.Errorf("%q is not a positive integer in canonical form", s)
	}
	return n, nil
}

// Tag returns the hash-tagged prefix of every key of projection name: "{el:<name>}".
// With partitions, it holds the keys shared by all partitions (the active
// build, the partition counts, the members); PartitionTag the others.
func Tag(name string) string { return "{el:" + name + "}" }

// Partition names partition Index of Count of a build. Count 0 or 1 (the zero
// Partition) is an unpartitioned build, whose keys are in Tag(name).
type Partition struct {
	Index int
	Count int
}

// Partitioned reports whether p is a partition of a build split in more than one.
func (p Partition) Partitioned() bool { return p.Count > 1 }

// String returns "p<index>/<count>", or "" for the zero Partition.
func (p Partition) String() string {
	if !p.Partitioned() {
		return ""
	}
	return "p" + strconv.Itoa(p.Index) + "/" + strconv.Itoa(p.Count)
}

// PartitionTag returns the hash tag of the keys of partition p of projection
// name: "{el:<name>:p<index>}", or Tag(name) when p is not partitioned.
func PartitionTag(name string, p Partition) string {
	if !p.Partitioned() {
		return Tag(name)
	}
	return "{el:" + name + ":p" + strconv.Itoa(p.Index) + "}"
}

// PartitionOf returns the partition, 0 to n-1, of a record or read model
// entry with partition key key: the 32-bit FNV-1a hash of key's bytes modulo
// n. It is part of the key format (it decides where keys live): it never
// changes for a given n. n < 2 gives 0.
func PartitionOf(key string, n int) int {
	if n < 2 {
		return 0
	}
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}

// PartitionsKey returns the hash of projection name mapping each build split
// into more than one partition (its String form) to its partition count.
// Runners write a build's entry before its first batch, so it exists before
// the build can become active; a build without an entry has one partition.
func PartitionsKey(name string) string { return Tag(name) + ":partitions" }

// MembersKey returns the sorted set of the runners sharing the partitions of
// build b of projection name: member the runner's ID, score when its
// membership expires, in milliseconds of the Redis server's clock. Each build
// has its own, so that a new generation of a version is built by its own
// runners beside the live generation's: "{el:carts}:members:3" for
// generation 0 of version 3 (the key from before generations had members),
// "{el:carts}:members:3g1" for generation 1.
func MembersKey(name string, b Build) string { return Tag(name) + ":members:" + b.String() }

// ActiveKey returns the key naming the live build of projection name.
func ActiveKey(name string) string { return Tag(name) + ":active" }

// Prefix returns the prefix of every key of build b of projection name,
// ending with ':', e.g. "{el:carts}:v3:" (Version(3)) or "{el:carts}:v3g1:".
// SCAN MATCH Prefix(...)+"*" lists that build's keys and no other's.
func Prefix(name string, b Build) string {
	return Tag(name) + ":v" + b.String() + ":"
}

// PartitionPrefix returns the prefix of every key of partition p of build b:
// "{el:<name>:p<index>}:v<b>:"; Prefix(name, b) when p is not partitioned.
func PartitionPrefix(name string, b Build, p Partition) string {
	return PartitionTag(name, p) + ":v" + b.String() + ":"
}

// Key returns the key of a read model entry of build b of projection name:
// Prefix followed by parts joined with ':'. Readers use View.Key, which
// follows the active build; writers use projection.Tx.Key.
func Key(name string, b Build, parts ...string) string {
	return PartitionKey(name, b, Partition{}, parts...)
}

// PartitionKey returns the key of a read model entry of partition p of build
// b: PartitionPrefix followed by parts joined with ':'.
func PartitionKey(name string, b Build, part Partition, parts ...string) string {
	var sb strings.Builder
	p := PartitionPrefix(name, b, part)
	n := len(p)
	for _, s := range parts {
		n += len(s) + 1
	}
	sb.Grow(n)
	sb.WriteString(p)
	for i, s := range parts {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(s)
	}
	return sb.String()
}

// CheckpointKey returns the key of the checkpoint hash of build b.
func CheckpointKey(name string, b Build) string {
	return Prefix(name, b) + "checkpoint"
}

// PartitionCheckpointKey returns the key of the checkpoint hash of partition
// p of build b.
func PartitionCheckpointKey(name string, b Build, p Partition) string {
	return PartitionPrefix(name, b, p) + "checkpoint"
}

// Fields of the checkpoint hash.
const (
	// FieldPosition is the position token (eventstore.Position.String) of the
	// last record applied.
	FieldPosition = "position"
	// FieldCommit and FieldPrepare are the two numbers of that position, in
	// decimal, so scripts can compare positions.
	FieldCommit  = "commit"
	FieldPrepare = "prepare"
	// FieldRecordedAt is when the store committed that record, in Unix
	// nanoseconds; now minus it is the model's staleness while it lags.
	FieldRecordedAt = "recorded_at"
	// FieldUpdatedAt is when the checkpoint was written, in Unix nanoseconds.
	FieldUpdatedAt = "updated_at"
)

// CommitChannel returns the pub/sub channel on which the runners of
// projection name announce each committed batch, from inside the transaction
// that writes the checkpoint: "{el:<name>}:commits". The message is the
// build and the position of the new checkpoint, "<build> <position>", e.g.
// "3g1 1042". A switch to a new build (an activation) is announced on the same
// channel as "<build> <position> switched", so that a reader who checks that
// the batches of a build announce increasing positions can tell it from a
// batch. Watcher subscribes to the channels of every projection.
func CommitChannel(name string) string { return Tag(name) + ":commits" }

// CommitMessage returns the message announcing that build b's checkpoint
// reached position.
func CommitMessage(b Build, position string) string { return b.String() + " " + position }

// SwitchedSuffix ends the message announcing a switch to a build (see
// CommitChannel).
const SwitchedSuffix = " switched"

// commitPattern matches the CommitChannel of every projection. Names hold no
// glob characters, so it matches nothing else of ours.
const commitPattern = "{el:*}:commits"

// projectionOfChannel returns the projection name of a CommitChannel.
func projectionOfChannel(ch string) (string, bool) {
	name, ok := strings.CutPrefix(ch, "{el:")
	if !ok {
		return "", false
	}
	name, ok = strings.CutSuffix(name, "}:commits")
	if !ok || ValidateName(name) != nil {
		return "", false
	}
	return name, true
}

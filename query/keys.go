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

// The key layout of every projection. All keys of one projection, across its
// builds, share the hash tag {el:<name>}, so they live in one Redis Cluster
// slot and one transaction or script can touch any of them. <b> is a Build in
// its String form: "3" for generation 0 of version 3, "3g1" for generation 1.
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
func Tag(name string) string { return "{el:" + name + "}" }

// ActiveKey returns the key naming the live build of projection name.
func ActiveKey(name string) string { return Tag(name) + ":active" }

// Prefix returns the prefix of every key of build b of projection name,
// ending with ':', e.g. "{el:carts}:v3:" (Version(3)) or "{el:carts}:v3g1:".
// SCAN MATCH Prefix(...)+"*" lists that build's keys and no other's.
func Prefix(name string, b Build) string {
	return Tag(name) + ":v" + b.String() + ":"
}

// Key returns the key of a read model entry of build b of projection name:
// Prefix followed by parts joined with ':'. Readers use View.Key, which
// follows the active build; writers use projection.Tx.Key.
func Key(name string, b Build, parts ...string) string {
	var sb strings.Builder
	p := Prefix(name, b)
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
// "3g1 1042". Watcher subscribes to the channels of every projection.
func CommitChannel(name string) string { return Tag(name) + ":commits" }

// CommitMessage returns the message announcing that build b's checkpoint
// reached position.
func CommitMessage(b Build, position string) string { return b.String() + " " + position }

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

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
// versions, share the hash tag {el:<name>}, so they live in one Redis Cluster
// slot and one transaction or script can touch any of them.
//
//	{el:<name>}:active                 the live version, a decimal integer
//	{el:<name>}:v<n>:checkpoint        hash: position, commit, prepare, recorded_at, updated_at
//	{el:<name>}:v<n>:lease             the token of the runner allowed to write version n
//	{el:<name>}:v<n>:status            hash written by the lease holder (state, head, error, ...)
//	{el:<name>}:v<n>:deadletter        list of records set aside by the dead-letter policy
//	{el:<name>}:v<n>:<parts...>        the read model itself

// Tag returns the hash-tagged prefix of every key of projection name: "{el:<name>}".
func Tag(name string) string { return "{el:" + name + "}" }

// ActiveKey returns the key naming the live version of projection name.
func ActiveKey(name string) string { return Tag(name) + ":active" }

// VersionPrefix returns the prefix of every key of version of projection name,
// ending with ':', e.g. "{el:carts}:v3:". SCAN MATCH VersionPrefix(...)+"*"
// lists one version's keys.
func VersionPrefix(name string, version int) string {
	return Tag(name) + ":v" + strconv.Itoa(version) + ":"
}

// Key returns the key of a read model entry of version of projection name:
// the version prefix followed by parts joined with ':'.
func Key(name string, version int, parts ...string) string {
	var b strings.Builder
	p := VersionPrefix(name, version)
	n := len(p)
	for _, s := range parts {
		n += len(s) + 1
	}
	b.Grow(n)
	b.WriteString(p)
	for i, s := range parts {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(s)
	}
	return b.String()
}

// CheckpointKey returns the key of the checkpoint hash of one version.
func CheckpointKey(name string, version int) string {
	return VersionPrefix(name, version) + "checkpoint"
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

package command

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Limits on ids.
const (
	// MaxIDLen is the longest entity id, in bytes.
	MaxIDLen = 128
	// MaxNameLen is the longest entity kind name (Config.Name), in bytes.
	MaxNameLen = 64
	// MaxCommandIDLen is the longest command id (see WithID), in bytes.
	MaxCommandIDLen = 256
)

// Header names the Handler writes into eventstore.Metadata.Headers of every
// event of an idempotent command. They are reserved: a header of the same name
// in the context's metadata is overwritten.
const (
	// HeaderCommandID holds the command id given with WithID.
	HeaderCommandID = "eventline.command_id"
	// HeaderCommandHash holds a hash of the command's Go type and JSON, so that
	// reusing a command id for a different command is detected.
	HeaderCommandHash = "eventline.command_hash"
)

// eventIDSpace is the UUIDv5 namespace of event ids derived from command ids.
// It is itself the UUIDv5 of the project's URL, so that it is reproducible.
var eventIDSpace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/eventline/eventline/command"))

// ValidateID returns an error matching ErrInvalidID unless id is 1 to MaxIDLen
// bytes of [A-Za-z0-9._~-], the characters that are safe in stream names, Redis
// keys and URL paths without escaping.
func ValidateID(id string) error {
	return validateName("entity id", id, MaxIDLen)
}

func validateName(what, s string, max int) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalidID, what)
	case len(s) > max:
		return fmt.Errorf("%w: %s is %d bytes, at most %d", ErrInvalidID, what, len(s), max)
	}
	for i := 0; i < len(s); i++ {
		if !idByte(s[i]) {
			return fmt.Errorf("%w: %s %q: byte %d is not one of [A-Za-z0-9._~-]", ErrInvalidID, what, s, i)
		}
	}
	return nil
}

func idByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '~' || c == '-'
}

// validateCommandID accepts what an HTTP Idempotency-Key may reasonably hold:
// printable UTF-8, at most MaxCommandIDLen bytes.
func validateCommandID(key string) error {
	if len(key) > MaxCommandIDLen {
		return fmt.Errorf("%w: command id is %d bytes, at most %d", ErrInvalidID, len(key), MaxCommandIDLen)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("%w: command id %q is not valid UTF-8", ErrInvalidID, key)
	}
	for _, r := range key {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: command id %q contains a control character", ErrInvalidID, key)
		}
	}
	return nil
}

// eventID derives the id of the index-th event an idempotent command writes to
// stream. The same command id always yields the same event ids, so that even an
// append retried after a crash is recognised by the store as a repeat.
func eventID(stream, commandID string, index int) uuid.UUID {
	name := make([]byte, 0, len(stream)+len(commandID)+8)
	name = append(name, stream...)
	name = append(name, 0)
	name = append(name, commandID...)
	name = append(name, 0)
	name = strconv.AppendInt(name, int64(index), 10)
	return uuid.NewSHA1(eventIDSpace, name)
}

// commandHash identifies a command by its dynamic Go type and its JSON. It is
// empty when the command does not marshal, which disables the reuse check.
func commandHash(cmd any) string {
	data, err := json.Marshal(cmd)
	if err != nil {
		return ""
	}
	h := sha256.New()
	fmt.Fprintf(h, "%T\x00", cmd)
	h.Write(data)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16])
}

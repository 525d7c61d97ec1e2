//go:build !linux

package sqlite

// Elsewhere than on Linux the test has no way to make SQLite's write fail.
var writeErrorCommit commitFailure

const writeErrorCause = ""

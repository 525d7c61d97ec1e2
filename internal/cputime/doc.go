// Package cputime reads the CPU time of the running process, for benchmarks
// that report CPU per operation: on a machine shared with other work it is a
// steadier figure than operations per second.
package cputime

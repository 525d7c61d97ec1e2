//go:build race

package saga_test

// raceEnabled says the tests run under the race detector.
const raceEnabled = true

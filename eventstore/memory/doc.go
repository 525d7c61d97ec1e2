// Package memory is an in-process [eventstore.Store] for tests and examples. It
// keeps everything in memory, passes the same contract suite as the durable
// backends ([github.com/eventline/eventline/eventstore/eventstoretest]), and loses everything on Close.
//
// Appends are serialised by one mutex and become visible to readers and
// subscribers before Append returns; subscribers wake on append and never poll.
// Readers get their own copies of event data and headers.
package memory

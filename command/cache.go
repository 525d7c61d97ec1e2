package command

import (
	"sync"

	"github.com/eventline/eventline/eventstore"
)

// DefaultCacheSize is how many streams' states a Handler keeps when
// Config.CacheSize is 0.
const DefaultCacheSize = 10_000

// maxCachedCommandIDs bounds the command ids one cache entry remembers. A
// stream with more idempotent commands than this stops being served from the
// cache for keyed commands: they reload the whole stream, as without a cache,
// because the entry can no longer tell a new command id from an old one.
const maxCachedCommandIDs = 1024

// entry is what the cache keeps of one stream: its state folded up to
// version, so that the next command reads only the events after it.
//
// An entry is owned by whoever took it out of the cache: the cache never holds
// an entry that is in use, so a state that Evolve mutates in place is never
// seen half-applied, and an entry whose use failed is simply not put back.
type entry[S any] struct {
	stream   string
	version  uint64 // 0: no events folded (initial state)
	position eventstore.Position
	state    S
	// commands are the command ids found in the stream up to version, unless
	// commandsOverflow: then some were not recorded.
	commands         map[string]commandRecord
	commandsOverflow bool

	prev, next *entry[S] // recency list; most recent at the cache's head
}

// commandRecord is where an idempotent command's events are in its stream.
type commandRecord struct {
	first, last uint64
	position    eventstore.Position // of the last event
	hash        string
}

// remember records that the event at version (and position) belongs to
// command id key.
func (e *entry[S]) remember(key, hash string, version uint64, position eventstore.Position) {
	if e.commandsOverflow {
		return
	}
	r, ok := e.commands[key]
	if !ok {
		if len(e.commands) >= maxCachedCommandIDs {
			e.commands, e.commandsOverflow = nil, true
			return
		}
		if e.commands == nil {
			e.commands = map[string]commandRecord{}
		}
		r = commandRecord{first: version, hash: hash}
	}
	r.last, r.position = version, position
	e.commands[key] = r
}

// stateCache is a least-recently-used set of entries, bounded by count.
type stateCache[S any] struct {
	mu         sync.Mutex
	size       int
	entries    map[string]*entry[S]
	head, tail *entry[S]
}

func newStateCache[S any](size int) *stateCache[S] {
	return &stateCache[S]{size: size, entries: map[string]*entry[S]{}}
}

// take removes stream's entry from the cache and returns it, or nil. The
// caller owns it until it puts it back.
func (c *stateCache[S]) take(stream string) *entry[S] {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[stream]
	if e != nil {
		delete(c.entries, stream)
		c.unlink(e)
	}
	return e
}

// put makes e the most recent entry, evicting the least recent one past the
// bound. An entry already cached for the stream (impossible while callers
// hold the stream's turn, but cheap to be sure of) is replaced.
func (c *stateCache[S]) put(e *entry[S]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.entries[e.stream]; old != nil {
		c.unlink(old)
	}
	c.entries[e.stream] = e
	e.prev, e.next = nil, c.head
	if c.head != nil {
		c.head.prev = e
	}
	c.head = e
	if c.tail == nil {
		c.tail = e
	}
	for len(c.entries) > c.size && c.tail != nil {
		old := c.tail
		delete(c.entries, old.stream)
		c.unlink(old)
	}
}

func (c *stateCache[S]) unlink(e *entry[S]) {
	if e.prev != nil {
		e.prev.next = e.next
	} else if c.head == e {
		c.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else if c.tail == e {
		c.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

// len returns the number of cached entries.
func (c *stateCache[S]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

package command

import "testing"

func TestStateCacheLRU(t *testing.T) {
	c := newStateCache[int](2)
	for _, s := range []string{"a", "b"} {
		c.put(&entry[int]{stream: s})
	}
	if e := c.take("a"); e == nil || c.len() != 1 {
		t.Fatal("take did not remove a")
	}
	if c.take("a") != nil {
		t.Fatal("a taken twice")
	}
	c.put(&entry[int]{stream: "a"}) // a is now the most recent
	c.put(&entry[int]{stream: "c"}) // evicts b, the least recent
	if c.len() != 2 || c.take("b") != nil || c.take("a") == nil || c.take("c") == nil {
		t.Fatal("eviction did not drop the least recently used entry")
	}
	if c.len() != 0 || c.head != nil || c.tail != nil {
		t.Fatal("an empty cache keeps links")
	}
	var e entry[int]
	for i := range maxCachedCommandIDs + 1 {
		e.remember(string(rune('a'+i%26))+string(rune(i)), "", uint64(i+1), Result[int]{}.Position)
	}
	if !e.commandsOverflow || e.commands != nil {
		t.Fatal("an entry past maxCachedCommandIDs still claims to know every command id")
	}
}

package eventstore

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"sync"
)

// Registry maps Go event types to stable type names and JSON, and back.
// Register every event type once, at start-up; a Registry is then safe for
// concurrent use.
//
// Old shapes of an event are handled by upcasters: Upcast registers a function
// that turns the data of an old type name into a newer type name and data,
// applied on Decode before the type is looked up.
type Registry struct {
	mu        sync.RWMutex
	names     map[reflect.Type]string
	types     map[string]reflect.Type
	upcasters map[string]Upcaster
}

// Upcaster turns the data of an old event type into a newer type name and data.
type Upcaster func(data []byte) (newType string, newData []byte, err error)

// maxUpcasts bounds an upcaster chain, so that a cycle is an error, not a hang.
const maxUpcasts = 32

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{
		names:     map[reflect.Type]string{},
		types:     map[string]reflect.Type{},
		upcasters: map[string]Upcaster{},
	}
}

// Register maps the Go type E to the type name. It panics when the name or the
// type is already registered differently: that is a programming error, found at
// start-up, like registering one pattern twice on an http.ServeMux.
func Register[E any](r *Registry, name string) {
	t := reflect.TypeFor[E]()
	if name == "" || len(name) > MaxTypeLen {
		panic(fmt.Sprintf("eventstore: Register %v: type name must be 1 to %d bytes", t, MaxTypeLen))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.types[name]; ok && old != t {
		panic(fmt.Sprintf("eventstore: type name %q registered for both %v and %v", name, old, t))
	}
	if old, ok := r.names[t]; ok && old != name {
		panic(fmt.Sprintf("eventstore: %v registered as both %q and %q", t, old, name))
	}
	r.types[name] = t
	r.names[t] = name
}

// Upcast registers fn to turn records of the old type name into a newer shape.
func (r *Registry) Upcast(oldType string, fn Upcaster) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.upcasters[oldType] = fn
}

// Name returns the type name registered for v's type (v may be a pointer).
func (r *Registry) Name(v any) (string, bool) {
	t := reflect.TypeOf(v)
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	name, ok := r.names[t]
	return name, ok
}

// Types returns the registered type names, sorted.
func (r *Registry) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.types))
	for n := range r.types {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Encode returns an Event with v's type name and v as JSON. The Event has no ID
// or Metadata yet.
func (r *Registry) Encode(v any) (Event, error) {
	name, ok := r.Name(v)
	if !ok {
		return Event{}, fmt.Errorf("%w: Go type %T is not registered", ErrUnknownEventType, v)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return Event{}, fmt.Errorf("eventstore: encode %s: %w", name, err)
	}
	return Event{Type: name, Data: data}, nil
}

// Decode returns the Go value (not a pointer) of a record's event, after
// upcasting. Errors are *RecordError values matching ErrUnknownEventType or
// ErrDecode, naming the type and the position.
func (r *Registry) Decode(rec Record) (any, error) {
	typ, data := rec.Type, rec.Data
	fail := func(err error) error {
		return &RecordError{StreamID: rec.StreamID, Version: rec.Version, Position: rec.Position, Type: rec.Type, Err: err}
	}
	r.mu.RLock()
	t, ok := r.types[typ]
	for n := 0; !ok; n++ {
		up, has := r.upcasters[typ]
		if !has {
			break
		}
		if n == maxUpcasts {
			r.mu.RUnlock()
			return nil, fail(fmt.Errorf("%w: more than %d upcasts from %q", ErrDecode, maxUpcasts, rec.Type))
		}
		r.mu.RUnlock()
		var err error
		if typ, data, err = up(data); err != nil {
			return nil, fail(fmt.Errorf("%w: upcast: %w", ErrDecode, err))
		}
		r.mu.RLock()
		t, ok = r.types[typ]
	}
	r.mu.RUnlock()
	if !ok {
		return nil, fail(fmt.Errorf("%w %q", ErrUnknownEventType, typ))
	}
	p := reflect.New(t)
	if len(data) > 0 {
		if err := json.Unmarshal(data, p.Interface()); err != nil {
			return nil, fail(fmt.Errorf("%w as %s: %w", ErrDecode, typ, err))
		}
	}
	return p.Elem().Interface(), nil
}

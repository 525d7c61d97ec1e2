// Package domain holds what the sample's domain packages (cart, order,
// customer) share: the error type of their refusals. It imports nothing but
// the standard library, so the domain stays free of framework code.
package domain

import "errors"

// ErrRuleViolated is matched by every refusal of every domain package, so the
// HTTP layer can answer all of them with one status.
var ErrRuleViolated = errors.New("rule violated")

// Rule returns a sentinel error for one rule of a domain package. It matches
// (errors.Is) itself, kind — the package's own ErrRuleViolated — and
// ErrRuleViolated.
func Rule(kind error, text string) error { return &violation{kind: kind, text: text} }

type violation struct {
	kind error
	text string
}

func (v *violation) Error() string { return v.text }

// Is makes errors.Is(err, kind) and errors.Is(err, ErrRuleViolated) true.
func (v *violation) Is(target error) bool { return target == v.kind || target == ErrRuleViolated }

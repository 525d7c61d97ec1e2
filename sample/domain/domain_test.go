package domain_test

import (
	"errors"
	"testing"

	"github.com/eventline/eventline/sample/domain"
)

func TestRuleMatchesItsKindAndTheCommonSentinel(t *testing.T) {
	errCart := errors.New("cart rule violated")
	errOrder := errors.New("order rule violated")
	empty := domain.Rule(errCart, "cart: empty")
	if !errors.Is(empty, empty) || !errors.Is(empty, errCart) || !errors.Is(empty, domain.ErrRuleViolated) {
		t.Fatal("a rule error must match itself, its kind and ErrRuleViolated")
	}
	if errors.Is(empty, errOrder) || errors.Is(empty, domain.Rule(errCart, "cart: empty")) {
		t.Fatal("a rule error must not match another kind or another rule")
	}
	if empty.Error() != "cart: empty" {
		t.Fatalf("Error() = %q", empty.Error())
	}
}

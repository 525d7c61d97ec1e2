package command_test

import (
	"errors"
	"testing"

	"github.com/eventline/eventline/command/commandtest"
)

func TestAccountRules(t *testing.T) {
	opened := accountOpened{Owner: "ann"}
	t.Run("open", func(t *testing.T) {
		commandtest.For(t, accountDecider).When(openAccount{Owner: "ann"}).Then(opened)
	})
	t.Run("open twice", func(t *testing.T) {
		commandtest.For(t, accountDecider).Given(opened).When(openAccount{Owner: "bob"}).ThenError(errAlreadyOpen)
	})
	t.Run("deposit before open", func(t *testing.T) {
		commandtest.For(t, accountDecider).When(deposit{Amount: 5}).ThenError(errNotOpen)
	})
	t.Run("deposit", func(t *testing.T) {
		commandtest.For(t, accountDecider).Given(opened).When(deposit{Amount: 5}).Then(deposited{Amount: 5})
	})
	t.Run("non-positive amount", func(t *testing.T) {
		commandtest.For(t, accountDecider).Given(opened).When(deposit{Amount: 0}).ThenError(errInvalidAmount)
		commandtest.For(t, accountDecider).Given(opened).When(withdraw{Amount: -1}).ThenError(errInvalidAmount)
	})
	t.Run("withdraw within balance", func(t *testing.T) {
		commandtest.For(t, accountDecider).Given(opened, deposited{Amount: 10}, withdrawn{Amount: 4}).
			When(withdraw{Amount: 6}).Then(withdrawn{Amount: 6})
	})
	t.Run("overdraft", func(t *testing.T) {
		commandtest.For(t, accountDecider).Given(opened, deposited{Amount: 10}).
			When(withdraw{Amount: 11}).ThenError(errInsufficientFunds)
	})
	t.Run("check balance changes nothing", func(t *testing.T) {
		commandtest.For(t, accountDecider).Given(opened).When(checkBalance{}).Then()
	})
	t.Run("state", func(t *testing.T) {
		commandtest.For(t, accountDecider).Given(opened, deposited{Amount: 10}).
			When(withdraw{Amount: 3}).ThenState(account{Open: true, Owner: "ann", Balance: 7})
	})
}

func TestDeciderFold(t *testing.T) {
	got := accountDecider.Fold(accountOpened{Owner: "x"}, deposited{Amount: 3}, withdrawn{Amount: 1})
	if want := (account{Open: true, Owner: "x", Balance: 2}); got != want {
		t.Fatalf("Fold = %+v, want %+v", got, want)
	}
	if got := accountDecider.Fold(); got != (account{}) {
		t.Fatalf("Fold() = %+v, want the initial state", got)
	}
	_, err := accountDecider.Decide(account{Open: true, Balance: 1}, withdraw{Amount: 2})
	var od *overdraftError
	if !errors.As(err, &od) || od.Balance != 1 {
		t.Fatalf("Decide overdraft error = %v", err)
	}
}

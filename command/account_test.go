package command_test

import (
	"errors"
	"fmt"

	"github.com/eventline/eventline/command"
	"github.com/eventline/eventline/eventstore"
)

// The tests' domain: a bank account whose balance must never go negative.

type account struct {
	Open    bool
	Owner   string
	Balance int64
}

type accountCommand interface{ isAccountCommand() }

type (
	openAccount struct{ Owner string }
	deposit     struct{ Amount int64 }
	withdraw    struct{ Amount int64 }
	// openWithDeposit decides two events.
	openWithDeposit struct {
		Owner  string
		Amount int64
	}
	// checkBalance decides nothing: a command that is valid but changes nothing.
	checkBalance struct{}
)

func (openAccount) isAccountCommand()     {}
func (deposit) isAccountCommand()         {}
func (withdraw) isAccountCommand()        {}
func (checkBalance) isAccountCommand()    {}
func (openWithDeposit) isAccountCommand() {}

type accountEvent interface{ isAccountEvent() }

type (
	accountOpened struct{ Owner string }
	deposited     struct{ Amount int64 }
	withdrawn     struct{ Amount int64 }
)

func (accountOpened) isAccountEvent() {}
func (deposited) isAccountEvent()     {}
func (withdrawn) isAccountEvent()     {}

var (
	errAlreadyOpen       = errors.New("account already open")
	errNotOpen           = errors.New("account not open")
	errInvalidAmount     = errors.New("amount must be positive")
	errInsufficientFunds = errors.New("insufficient funds")
)

// overdraftError is a domain error type, to show errors.As through Handle.
type overdraftError struct{ Balance, Amount int64 }

func (e *overdraftError) Error() string {
	return fmt.Sprintf("withdrawing %d from a balance of %d", e.Amount, e.Balance)
}
func (e *overdraftError) Unwrap() error { return errInsufficientFunds }

var accountDecider = command.Decider[account, accountCommand, accountEvent]{
	Initial: func() account { return account{} },
	Decide: func(s account, c accountCommand) ([]accountEvent, error) {
		switch c := c.(type) {
		case openAccount:
			if s.Open {
				return nil, errAlreadyOpen
			}
			return []accountEvent{accountOpened(c)}, nil
		case openWithDeposit:
			switch {
			case s.Open:
				return nil, errAlreadyOpen
			case c.Amount <= 0:
				return nil, errInvalidAmount
			}
			return []accountEvent{accountOpened{Owner: c.Owner}, deposited{Amount: c.Amount}}, nil
		case deposit:
			switch {
			case !s.Open:
				return nil, errNotOpen
			case c.Amount <= 0:
				return nil, errInvalidAmount
			}
			return []accountEvent{deposited(c)}, nil
		case withdraw:
			switch {
			case !s.Open:
				return nil, errNotOpen
			case c.Amount <= 0:
				return nil, errInvalidAmount
			case c.Amount > s.Balance:
				return nil, &overdraftError{Balance: s.Balance, Amount: c.Amount}
			}
			return []accountEvent{withdrawn(c)}, nil
		case checkBalance:
			if !s.Open {
				return nil, errNotOpen
			}
			return nil, nil
		}
		return nil, fmt.Errorf("unknown command %T", c)
	},
	Evolve: func(s account, e accountEvent) account {
		switch e := e.(type) {
		case accountOpened:
			s.Open, s.Owner = true, e.Owner
		case deposited:
			s.Balance += e.Amount
		case withdrawn:
			s.Balance -= e.Amount
		}
		return s
	},
}

func accountRegistry() *eventstore.Registry {
	r := eventstore.NewRegistry()
	eventstore.Register[accountOpened](r, "account.opened")
	eventstore.Register[deposited](r, "account.deposited")
	eventstore.Register[withdrawn](r, "account.withdrawn")
	return r
}

func newAccounts(store eventstore.Store, cfg command.Config) (*command.Handler[account, accountCommand, accountEvent], error) {
	if cfg.Name == "" {
		cfg.Name = "account"
	}
	return command.NewHandler(store, accountRegistry(), accountDecider, cfg)
}

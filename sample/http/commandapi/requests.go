package commandapi

import (
	"net/http"

	"github.com/eventline/eventline/sample/domain/cart"
	"github.com/eventline/eventline/sample/domain/customer"
	"github.com/eventline/eventline/sample/http/httpjson"
)

// OpenCartRequest is the body of POST /carts.
type OpenCartRequest struct {
	CustomerID string `json:"customer_id"`
	// CartID is the id the client chose for the cart; empty means the server
	// chooses one.
	CartID string `json:"cart_id,omitempty"`
}

// Command returns the cart command the request asks for.
func (r OpenCartRequest) Command() cart.Open { return cart.Open{CustomerID: r.CustomerID} }

// AddItemRequest is the body of POST /carts/{id}/items.
type AddItemRequest struct {
	ProductID      string `json:"product_id"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// Command returns the cart command the request asks for.
func (r AddItemRequest) Command() cart.AddItem { return cart.AddItem(r) }

// ChangeQuantityRequest is the body of PUT /carts/{id}/items/{product_id}.
type ChangeQuantityRequest struct {
	Quantity int `json:"quantity"`
}

// Command returns the cart command the request asks for; the product id is
// the URL's.
func (r ChangeQuantityRequest) Command(productID string) cart.ChangeQuantity {
	return cart.ChangeQuantity{ProductID: productID, Quantity: r.Quantity}
}

// RegisterCustomerRequest is the body of POST /customers.
type RegisterCustomerRequest struct {
	// CustomerID is the id the client chose; empty means the server chooses
	// one.
	CustomerID       string `json:"customer_id,omitempty"`
	CreditLimitCents int64  `json:"credit_limit_cents"`
}

// Command returns the customer command the request asks for.
func (r RegisterCustomerRequest) Command() customer.Register {
	return customer.Register{CreditLimitCents: r.CreditLimitCents}
}

// The wire shapes use pointers so that an absent (or null) field is told from
// a zero one: a missing quantity is malformed (400), a quantity of 0 breaks a
// rule (422).
type (
	openCartWire struct {
		CustomerID *string `json:"customer_id"`
		CartID     *string `json:"cart_id"`
	}
	addItemWire struct {
		ProductID      *string `json:"product_id"`
		Quantity       *int    `json:"quantity"`
		UnitPriceCents *int64  `json:"unit_price_cents"`
	}
	changeQuantityWire struct {
		Quantity *int `json:"quantity"`
	}
	registerCustomerWire struct {
		CustomerID       *string `json:"customer_id"`
		CreditLimitCents *int64  `json:"credit_limit_cents"`
	}
)

// DecodeOpenCart decodes the body of POST /carts. customer_id is required and
// non-empty; an empty cart_id counts as absent. Every error is an *httpjson.Error
// with a 4xx status.
func DecodeOpenCart(w http.ResponseWriter, r *http.Request) (OpenCartRequest, error) {
	var in openCartWire
	if err := httpjson.Decode(w, r, &in); err != nil {
		return OpenCartRequest{}, err
	}
	if err := httpjson.RequiredString("customer_id", in.CustomerID); err != nil {
		return OpenCartRequest{}, err
	}
	return OpenCartRequest{CustomerID: *in.CustomerID, CartID: deref(in.CartID)}, nil
}

// DecodeAddItem decodes the body of POST /carts/{id}/items. Every field is
// required and product_id must not be empty.
func DecodeAddItem(w http.ResponseWriter, r *http.Request) (AddItemRequest, error) {
	var in addItemWire
	if err := httpjson.Decode(w, r, &in); err != nil {
		return AddItemRequest{}, err
	}
	for _, err := range []error{
		httpjson.RequiredString("product_id", in.ProductID),
		httpjson.Required("quantity", in.Quantity != nil),
		httpjson.Required("unit_price_cents", in.UnitPriceCents != nil),
	} {
		if err != nil {
			return AddItemRequest{}, err
		}
	}
	return AddItemRequest{ProductID: *in.ProductID, Quantity: *in.Quantity, UnitPriceCents: *in.UnitPriceCents}, nil
}

// DecodeChangeQuantity decodes the body of PUT /carts/{id}/items/{product_id}.
// quantity is required.
func DecodeChangeQuantity(w http.ResponseWriter, r *http.Request) (ChangeQuantityRequest, error) {
	var in changeQuantityWire
	if err := httpjson.Decode(w, r, &in); err != nil {
		return ChangeQuantityRequest{}, err
	}
	if err := httpjson.Required("quantity", in.Quantity != nil); err != nil {
		return ChangeQuantityRequest{}, err
	}
	return ChangeQuantityRequest{Quantity: *in.Quantity}, nil
}

// DecodeRegisterCustomer decodes the body of POST /customers.
// credit_limit_cents is required; an empty customer_id counts as absent.
func DecodeRegisterCustomer(w http.ResponseWriter, r *http.Request) (RegisterCustomerRequest, error) {
	var in registerCustomerWire
	if err := httpjson.Decode(w, r, &in); err != nil {
		return RegisterCustomerRequest{}, err
	}
	if err := httpjson.Required("credit_limit_cents", in.CreditLimitCents != nil); err != nil {
		return RegisterCustomerRequest{}, err
	}
	return RegisterCustomerRequest{CustomerID: deref(in.CustomerID), CreditLimitCents: *in.CreditLimitCents}, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

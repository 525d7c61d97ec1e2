// Package api holds the pieces of the sample's HTTP command API that do not
// need a command handler: the request bodies of the command endpoints, a
// strict JSON decoder for them, and the mapping from errors to honest HTTP
// statuses with a JSON body {"error": "...", "code": "..."}.
//
// The decoders accept only what the API documents: Content-Type
// application/json (415 otherwise), at most MaxBodyBytes (413), exactly one
// JSON object with known fields of the right types and every required field
// present (400 otherwise, naming the field). They check the shape of a
// request, not the domain's rules: a quantity of 0 decodes, and the cart
// refuses it (422).
//
// WriteError maps an error with the table DefaultErrorMappings returns: the
// first mapping whose Target matches (errors.Is) decides the status and code.
// An *Error, such as a decoder's, is written as it is. Build a longer table
// and call WriteErrorWith to map more errors.
package api

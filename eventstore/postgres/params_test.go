package postgres

import (
	"bytes"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

// The writer's own encoding of the group statement's parameters must be what
// pgx sends for the same values, byte for byte: pgx's encoding is the one the
// store used before and the one the read path decodes.
func TestParamsEncodeAsPgx(t *testing.T) {
	m := pgtype.NewMap()
	id := uuid.New()
	cases := []struct {
		name   string
		oid    uint32
		value  any
		encode func(p *params)
	}{
		{"bigint", pgtype.Int8OID, int64(-42), func(p *params) { p.int8(-42) }},
		{"text", pgtype.TextOID, "eventline_s1", func(p *params) { p.text("eventline_s1") }},
		{"bigint[]", pgtype.Int8ArrayOID, []int64{1, -2, 1 << 40}, func(p *params) { p.int8s([]int64{1, -2, 1 << 40}) }},
		{"empty bigint[]", pgtype.Int8ArrayOID, []int64{}, func(p *params) { p.int8s([]int64{}) }},
		{"text[]", pgtype.TextArrayOID, []string{"a", "", "Zoë"}, func(p *params) { p.texts([]string{"a", "", "Zoë"}) }},
		{"uuid[]", pgtype.UUIDArrayOID, [][16]byte{id, {}}, func(p *params) { p.uuids([][16]byte{id, {}}) }},
		{"bytea[]", pgtype.ByteaArrayOID, [][]byte{[]byte("{}"), {}}, func(p *params) { p.byteas([][]byte{[]byte("{}"), {}}) }},
		{"bytea[] with NULL", pgtype.ByteaArrayOID, [][]byte{nil, []byte(`{"a":1}`)}, func(p *params) { p.byteas([][]byte{nil, []byte(`{"a":1}`)}) }},
	}
	var p params
	for _, c := range cases {
		want, err := m.Encode(c.oid, pgtype.BinaryFormatCode, c.value, nil)
		if err != nil {
			t.Fatalf("%s: pgx: %v", c.name, err)
		}
		p.reset()
		p.int8(7) // a parameter before, to check the bounds between them
		c.encode(&p)
		vals := p.values()
		if len(vals) != 2 || !bytes.Equal(vals[0], []byte{0, 0, 0, 0, 0, 0, 0, 7}) {
			t.Fatalf("%s: parameters %x, want 7 then the value", c.name, vals)
		}
		if !bytes.Equal(vals[1], want) {
			t.Errorf("%s: encoded\n%x\nwant (pgx)\n%x", c.name, vals[1], want)
		}
	}
}

package postgres

import (
	"encoding/binary"

	"github.com/jackc/pgx/v5/pgtype"
)

// params encodes the parameters of the group statement (writeAssumed) in
// PostgreSQL's binary format, into one buffer the writer reuses from batch to
// batch. pgx's encoder boxes every array element in an interface and plans
// its encoding through reflection: for a batch of 64 one-event appends, about
// 850 allocations and a few hundred microseconds of the writer's time per
// commit, spent while the database waits for the statement.
type params struct {
	buf  []byte
	ends []int // where each parameter ends in buf
	vals [][]byte
}

// maxKeptParams bounds the buffer kept between batches: a batch of large
// events does not pin its size for the life of the store.
const maxKeptParams = 1 << 20

func (p *params) reset() {
	p.buf, p.ends = p.buf[:0], p.ends[:0]
}

// release drops a buffer grown beyond maxKeptParams, once the statement has
// been sent.
func (p *params) release() {
	clear(p.vals)
	if cap(p.buf) > maxKeptParams {
		p.buf = nil
	}
}

func (p *params) end() { p.ends = append(p.ends, len(p.buf)) }

// values returns the encoded parameters, valid until the next reset.
func (p *params) values() [][]byte {
	p.vals = p.vals[:0]
	start := 0
	for _, end := range p.ends {
		p.vals = append(p.vals, p.buf[start:end:end])
		start = end
	}
	return p.vals
}

func (p *params) int8(v int64) {
	p.buf = binary.BigEndian.AppendUint64(p.buf, uint64(v))
	p.end()
}

func (p *params) text(v string) {
	p.buf = append(p.buf, v...)
	p.end()
}

// array starts a one-dimensional array of n elements of type oid (also when
// n is 0, as pgx does); nulls says whether any element is NULL.
func (p *params) array(oid uint32, n int, nulls bool) {
	flags := uint32(0)
	if nulls {
		flags = 1
	}
	p.buf = binary.BigEndian.AppendUint32(p.buf, 1)
	p.buf = binary.BigEndian.AppendUint32(p.buf, flags)
	p.buf = binary.BigEndian.AppendUint32(p.buf, oid)
	p.buf = binary.BigEndian.AppendUint32(p.buf, uint32(n))
	p.buf = binary.BigEndian.AppendUint32(p.buf, 1) // lower bound
}

func (p *params) int8s(vs []int64) {
	p.array(pgtype.Int8OID, len(vs), false)
	for _, v := range vs {
		p.buf = binary.BigEndian.AppendUint32(p.buf, 8)
		p.buf = binary.BigEndian.AppendUint64(p.buf, uint64(v))
	}
	p.end()
}

func (p *params) texts(vs []string) {
	p.array(pgtype.TextOID, len(vs), false)
	for _, v := range vs {
		p.buf = binary.BigEndian.AppendUint32(p.buf, uint32(len(v)))
		p.buf = append(p.buf, v...)
	}
	p.end()
}

func (p *params) uuids(vs [][16]byte) {
	p.array(pgtype.UUIDOID, len(vs), false)
	for _, v := range vs {
		p.buf = binary.BigEndian.AppendUint32(p.buf, 16)
		p.buf = append(p.buf, v[:]...)
	}
	p.end()
}

// byteas encodes a nil element as NULL.
func (p *params) byteas(vs [][]byte) {
	nulls := false
	for _, v := range vs {
		nulls = nulls || v == nil
	}
	p.array(pgtype.ByteaOID, len(vs), nulls)
	for _, v := range vs {
		if v == nil {
			p.buf = binary.BigEndian.AppendUint32(p.buf, 0xffffffff) // -1: NULL
			continue
		}
		p.buf = binary.BigEndian.AppendUint32(p.buf, uint32(len(v)))
		p.buf = append(p.buf, v...)
	}
	p.end()
}

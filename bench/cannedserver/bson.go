package main

import (
	"encoding/binary"
	"math"
	"strconv"
)

// BSON element types used by the canned replies.
const (
	bsonDouble   = 0x01
	bsonString   = 0x02
	bsonDocument = 0x03
	bsonArray    = 0x04
	bsonBool     = 0x08
	bsonInt32    = 0x10
	bsonInt64    = 0x12
)

// docBuilder appends BSON elements to a document under construction.
// Only used at startup and per connection, never per request on the hot path.
type docBuilder struct {
	b []byte
}

func newDoc(capacity int) *docBuilder {
	if capacity < 5 {
		capacity = 5
	}
	d := &docBuilder{b: make([]byte, 4, capacity)}
	return d
}

func (d *docBuilder) key(t byte, k string) {
	d.b = append(d.b, t)
	d.b = append(d.b, k...)
	d.b = append(d.b, 0)
}

func (d *docBuilder) double(k string, v float64) *docBuilder {
	d.key(bsonDouble, k)
	d.b = binary.LittleEndian.AppendUint64(d.b, math.Float64bits(v))
	return d
}

func (d *docBuilder) str(k, v string) *docBuilder {
	d.key(bsonString, k)
	d.b = binary.LittleEndian.AppendUint32(d.b, uint32(len(v)+1))
	d.b = append(d.b, v...)
	d.b = append(d.b, 0)
	return d
}

func (d *docBuilder) boolean(k string, v bool) *docBuilder {
	d.key(bsonBool, k)
	if v {
		d.b = append(d.b, 1)
	} else {
		d.b = append(d.b, 0)
	}
	return d
}

func (d *docBuilder) int32(k string, v int32) *docBuilder {
	d.key(bsonInt32, k)
	d.b = binary.LittleEndian.AppendUint32(d.b, uint32(v))
	return d
}

func (d *docBuilder) int64(k string, v int64) *docBuilder {
	d.key(bsonInt64, k)
	d.b = binary.LittleEndian.AppendUint64(d.b, uint64(v))
	return d
}

// begin starts an embedded document or array element; pass the returned offset
// to end once its elements are appended.
func (d *docBuilder) begin(t byte, k string) int {
	d.key(t, k)
	off := len(d.b)
	d.b = append(d.b, 0, 0, 0, 0)
	return off
}

// end terminates the embedded document or array started at off.
func (d *docBuilder) end(off int) *docBuilder {
	d.b = append(d.b, 0)
	binary.LittleEndian.PutUint32(d.b[off:], uint32(len(d.b)-off))
	return d
}

// int32Array appends an array of int32 values.
func (d *docBuilder) int32Array(k string, values []int32) *docBuilder {
	off := d.begin(bsonArray, k)
	for i, v := range values {
		d.int32(strconv.Itoa(i), v)
	}
	return d.end(off)
}

// finish terminates the document, writes its length prefix and returns the bytes.
func (d *docBuilder) finish() []byte {
	d.b = append(d.b, 0)
	binary.LittleEndian.PutUint32(d.b, uint32(len(d.b)))
	return d.b
}

// arrayOverhead is how many bytes an array adds around its element number i
// (type byte, decimal key, key terminator).
func arrayOverhead(i int) int {
	return 2 + len(strconv.Itoa(i))
}

// firstElement returns the type, key and value bytes of the first element of the
// BSON document at the start of doc, scanning no further than needed.  ok is false
// when the document is empty or malformed.  The value slice is only meaningful for
// strings (the string without its terminator), int64s (8 bytes) and booleans (1 byte).
func firstElement(doc []byte) (t byte, key []byte, value []byte, ok bool) {
	if len(doc) < 5 {
		return 0, nil, nil, false
	}
	size := int(int32(binary.LittleEndian.Uint32(doc)))
	if size < 5 || size > len(doc) {
		return 0, nil, nil, false
	}
	doc = doc[:size]
	t = doc[4]
	if t == 0 {
		return 0, nil, nil, false
	}
	end := 5
	for end < len(doc) && doc[end] != 0 {
		end++
	}
	if end >= len(doc) {
		return 0, nil, nil, false
	}
	key = doc[5:end]
	rest := doc[end+1:]
	switch t {
	case bsonString:
		if len(rest) >= 4 {
			n := int(int32(binary.LittleEndian.Uint32(rest)))
			if n >= 1 && 4+n <= len(rest) {
				value = rest[4 : 4+n-1]
			}
		}
	case bsonInt64:
		if len(rest) >= 8 {
			value = rest[:8]
		}
	case bsonBool:
		if len(rest) >= 1 {
			value = rest[:1]
		}
	}
	return t, key, value, true
}

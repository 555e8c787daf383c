package main

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

func testServer() *server {
	return newServer([]collectionSpec{
		{"small", 1, 100},
		{"docs16k", 1000, 16 * 1024},
		{"docs4m", 10, 4 * 1024 * 1024},
	}, collectionSpec{"", 3, 200}, 101)
}

func TestFirstElement(t *testing.T) {
	doc := newDoc(64).str("find", "small").str("$db", "bench").finish()
	typ, key, value, ok := firstElement(doc)
	if !ok || typ != bsonString || string(key) != "find" || string(value) != "small" {
		t.Fatalf("got %x %q %q %v", typ, key, value, ok)
	}
	doc = newDoc(64).int64("getMore", 42).finish()
	typ, key, value, ok = firstElement(doc)
	if !ok || typ != bsonInt64 || string(key) != "getMore" || le.Uint64(value) != 42 {
		t.Fatalf("got %x %q %v %v", typ, key, value, ok)
	}
	for _, bad := range [][]byte{nil, {5, 0, 0, 0, 0}, {9, 0, 0, 0, 2, 'a', 'b'}} {
		if _, _, _, ok := firstElement(bad); ok {
			t.Fatalf("accepted %v", bad)
		}
	}
}

// batchSizes decodes the number of documents in each reply of a collection.
func batchSizes(t *testing.T, c *collection) []int {
	t.Helper()
	var sizes []int
	for _, reply := range c.replies {
		// reply: {cursor: {<batch>: [...], ...}, ok}; walk to the array.
		array := firstValue(firstValue(reply))
		n := 0
		end := int(le.Uint32(array))
		for pos := 4; pos < end-1; n++ {
			pos++ // type
			for array[pos] != 0 {
				pos++
			}
			pos++
			pos += int(le.Uint32(array[pos:]))
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// firstValue returns the bytes from the first element's value of doc onwards.
func firstValue(doc []byte) []byte {
	pos := 5
	for doc[pos] != 0 {
		pos++
	}
	return doc[pos+1:]
}

func TestBatches(t *testing.T) {
	s := testServer()
	cases := map[string][]int{"small": {1}, "docs16k": {101, 899}, "docs4m": {3, 3, 3, 1}}
	for name, want := range cases {
		got := batchSizes(t, s.collections[name])
		if len(got) != len(want) {
			t.Fatalf("%s: batches %v, want %v", name, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s: batches %v, want %v", name, got, want)
			}
		}
		for _, reply := range s.collections[name].replies {
			if len(reply) > maxBSONObjectSize+16*1024 {
				t.Fatalf("%s: reply of %d bytes", name, len(reply))
			}
		}
	}
	if got := batchSizes(t, s.defaultColl); len(got) != 1 || got[0] != 3 {
		t.Fatalf("default collection batches %v", got)
	}
	if s.collections["small"].docSize != 100 {
		t.Fatalf("small document is %d bytes", s.collections["small"].docSize)
	}
}

func TestCountSequence(t *testing.T) {
	seq := append([]byte("documents\x00"), newDoc(16).int32("a", 1).finish()...)
	seq = append(seq, newDoc(16).int32("b", 2).finish()...)
	if n := countSequence(seq); n != 2 {
		t.Fatalf("counted %d documents", n)
	}
}

func encodeOpMsg(requestID uint32, flags uint32, command []byte, sequence []byte) []byte {
	body := le.AppendUint32(nil, flags)
	body = append(body, 0)
	body = append(body, command...)
	if sequence != nil {
		body = append(body, 1)
		body = le.AppendUint32(body, uint32(4+len(sequence)))
		body = append(body, sequence...)
	}
	msg := le.AppendUint32(nil, uint32(16+len(body)))
	msg = le.AppendUint32(msg, requestID)
	msg = le.AppendUint32(msg, 0)
	msg = le.AppendUint32(msg, opMsg)
	return append(msg, body...)
}

func readReply(t *testing.T, r io.Reader) (responseTo uint32, opCode int32, body []byte) {
	t.Helper()
	var header [16]byte
	if _, err := io.ReadFull(r, header[:]); err != nil {
		t.Fatal(err)
	}
	body = make([]byte, le.Uint32(header[:])-16)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatal(err)
	}
	return le.Uint32(header[8:]), int32(le.Uint32(header[12:])), body
}

func TestConversation(t *testing.T) {
	client, srv := net.Pipe()
	defer client.Close()
	go testServer().serve(srv)

	// Legacy OP_QUERY handshake.
	query := le.AppendUint32(nil, 0)
	query = append(query, "admin.$cmd\x00"...)
	query = le.AppendUint32(query, 0)
	query = le.AppendUint32(query, ^uint32(0))
	query = append(query, newDoc(32).int32("isMaster", 1).finish()...)
	msg := le.AppendUint32(nil, uint32(16+len(query)))
	msg = le.AppendUint32(msg, 7)
	msg = le.AppendUint32(msg, 0)
	msg = le.AppendUint32(msg, opQuery)
	go client.Write(append(msg, query...))
	responseTo, opCode, body := readReply(t, client)
	if responseTo != 7 || opCode != opReply || le.Uint32(body[16:]) != 1 {
		t.Fatalf("OP_QUERY reply: responseTo %d opCode %d", responseTo, opCode)
	}
	if !bytes.Contains(body, []byte("isWritablePrimary")) {
		t.Fatal("hello reply lacks isWritablePrimary")
	}

	// An unacknowledged insert gets no reply; the ping after it does.
	seq := append([]byte("documents\x00"), newDoc(16).int32("a", 1).finish()...)
	go func() {
		client.Write(encodeOpMsg(8, flagMoreToCome, newDoc(32).str("insert", "c").finish(), seq))
		client.Write(encodeOpMsg(9, 0, newDoc(32).int32("ping", 1).finish(), nil))
	}()
	responseTo, opCode, body = readReply(t, client)
	if responseTo != 9 || opCode != opMsg || !bytes.Equal(body[5:], newDoc(16).double("ok", 1).finish()) {
		t.Fatalf("ping reply: responseTo %d opCode %d body %v", responseTo, opCode, body)
	}

	// getMore walks the docs4m batches by cursor id.
	s := testServer()
	first := s.collections["docs4m"].replies[0]
	id := int64(binary.LittleEndian.Uint64(first[bytes.Index(first, []byte("\x12id\x00"))+4:]))
	go client.Write(encodeOpMsg(10, 0, newDoc(32).int64("getMore", id).finish(), nil))
	_, _, body = readReply(t, client)
	if !bytes.Equal(body[5:], s.collections["docs4m"].replies[1]) {
		t.Fatal("getMore did not return the second batch")
	}
}

func TestBusyPoll(t *testing.T) {
	defer busyPoll.Store(false)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := testServer()
	go func() {
		nc, err := ln.Accept()
		if err == nil {
			s.serve(nc)
		}
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ok := newDoc(16).double("ok", 1).finish()
	command := func(id uint32, doc []byte) []byte {
		t.Helper()
		if _, err := client.Write(encodeOpMsg(id, 0, doc, nil)); err != nil {
			t.Fatal(err)
		}
		responseTo, _, body := readReply(t, client)
		if responseTo != id {
			t.Fatalf("reply to %d, expected %d", responseTo, id)
		}
		return body[5:]
	}
	if reply := command(1, newDoc(32).str("cannedBusyPoll", "yes").finish()); bytes.Equal(reply, ok) {
		t.Fatal("cannedBusyPoll accepted a string")
	}
	if reply := command(2, newDoc(32).boolean("cannedBusyPoll", true).finish()); !bytes.Equal(reply, ok) || !busyPoll.Load() {
		t.Fatalf("cannedBusyPoll true: %v, mode %v", reply, busyPoll.Load())
	}
	// Requests soon after each other (polled) and after an idle gap (blocking read).
	for i, pause := range []time.Duration{0, 100 * time.Microsecond, 5 * time.Millisecond, 0} {
		time.Sleep(pause)
		if reply := command(uint32(10+i), newDoc(16).int32("ping", 1).finish()); !bytes.Equal(reply, ok) {
			t.Fatalf("ping after %v: %v", pause, reply)
		}
	}
	if reply := command(3, newDoc(32).boolean("cannedBusyPoll", false).finish()); !bytes.Equal(reply, ok) || busyPoll.Load() {
		t.Fatalf("cannedBusyPoll false: %v, mode %v", reply, busyPoll.Load())
	}
}

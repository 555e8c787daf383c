// Command cannedserver speaks just enough of the MongoDB wire protocol to answer a
// driver's requests with replies encoded once at startup.  It exists to benchmark
// client-side overhead: per request it reads the message header, finds the command
// name (the first key of the OP_MSG body document), echoes the requestID into
// responseTo and writes a pre-encoded reply, so it spends far less CPU per request
// than any Python client.
//
// It answers OP_MSG and the legacy OP_QUERY command form (replying OP_REPLY) that
// drivers may use for the first handshake.  Commands:
//
//	hello, isMaster, ismaster  a standalone server, maxWireVersion 21
//	ping, endSessions, killCursors  {ok: 1}
//	buildInfo                 a version document
//	find                      the canned documents of the collection (see below)
//	getMore                   the next canned batch, or an empty batch
//	insert                    {n: <documents sent>, ok: 1}
//	update, delete            {n: 0, ok: 1}
//	anything else             CommandNotFound (code 59)
//
// find picks its reply by collection name, ignoring filter, limit and batchSize:
//
//	small    1 document of 100 bytes
//	docs16k  1000 documents of 16 KiB (first batch of 101, then one getMore)
//	docs4m   10 documents of 4 MiB (batches of at most 16 MiB, three getMores)
//	other    -docs documents of -docsize bytes (default 1 of 100 bytes)
//
// Batches follow the server's rules: the first batch holds at most -first-batch
// documents, and no batch exceeds 16 MiB.  Cursor ids encode (collection, next batch),
// so getMore needs no per-cursor state.  Every reply's ns is "bench.<collection>".
//
// The listening port is printed alone on the first line of stdout.  The server only
// listens on loopback addresses.  It exits on SIGINT or SIGTERM, or when stdin
// reaches EOF with -exit-on-stdin-eof (so it dies with the process that started it),
// and then prints request counts to stderr.
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Wire protocol opcodes.
const (
	opReply = 1
	opQuery = 2004
	opMsg   = 2013
)

// Limits announced in the hello reply.
const (
	maxBSONObjectSize   = 16 * 1024 * 1024
	maxMessageSizeBytes = 48000000
	maxWriteBatchSize   = 100000
	maxWireVersion      = 21
	// batchBudget is how many bytes of documents one reply batch may carry.
	batchBudget = maxBSONObjectSize - 1024
	// smallReply is the size up to which a reply is copied into the connection's
	// write buffer and sent with one write; larger ones go out with writev.
	smallReply = 64 * 1024
	// benchDB is the database name in every cursor's ns.
	benchDB = "bench"
)

// OP_MSG flag bits.
const (
	flagChecksumPresent = 1
	flagMoreToCome      = 2
)

var le = binary.LittleEndian

// collection is the canned content of one collection: replies[0] answers find,
// replies[i] answers the getMore for batch i.
type collection struct {
	name    string
	docs    int
	docSize int
	replies [][]byte
}

// server holds everything encoded at startup plus request counters.
type server struct {
	collections  map[string]*collection
	byIndex      []*collection
	defaultColl  *collection
	okReply      []byte
	buildInfo    []byte
	insertOne    []byte
	updateReply  []byte
	deleteReply  []byte
	emptyGetMore []byte

	connections atomic.Int64
	counts      [numCounters]atomic.Int64
}

// Request counters, reported at exit.
const (
	countHello = iota
	countPing
	countBuildInfo
	countEndSessions
	countKillCursors
	countFind
	countGetMore
	countInsert
	countUpdate
	countDelete
	countOther
	numCounters
)

var counterNames = [numCounters]string{
	"hello", "ping", "buildInfo", "endSessions", "killCursors", "find", "getMore",
	"insert", "update", "delete", "other",
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "loopback address to listen on")
	docs := flag.Int("docs", 1, "documents find returns for collections other than small, docs16k, docs4m")
	docSize := flag.Int("docsize", 100, "size in bytes of each of those documents")
	firstBatch := flag.Int("first-batch", 101, "most documents in a find reply's first batch")
	exitOnEOF := flag.Bool("exit-on-stdin-eof", false, "exit when stdin reaches EOF")
	flag.BoolVar(&startBusy, "busy-poll", false, "start in busy-poll mode (see cannedBusyPoll)")
	flag.Parse()
	busyPoll.Store(startBusy)
	log.SetFlags(0)
	log.SetPrefix("cannedserver: ")

	if err := checkLoopback(*addr); err != nil {
		log.Fatal(err)
	}
	if *docs < 0 || *docSize < 0 || *firstBatch < 1 {
		log.Fatal("-docs and -docsize must be >= 0, -first-batch >= 1")
	}
	s := newServer([]collectionSpec{
		{"small", 1, 100},
		{"docs16k", 1000, 16 * 1024},
		{"docs4m", 10, 4 * 1024 * 1024},
	}, collectionSpec{"", *docs, *docSize}, *firstBatch)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	log.Printf("listening on %s", ln.Addr())

	done := make(chan string, 2)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() { done <- (<-sig).String() }()
	if *exitOnEOF {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			done <- "stdin closed"
		}()
	}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				log.Printf("accept: %v", err)
				continue
			}
			go s.serve(conn)
		}
	}()
	reason := <-done
	ln.Close()
	log.Printf("exiting (%s): %s", reason, s.summary())
}

// checkLoopback refuses to listen anywhere but on a loopback address.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("refusing to listen on %q: only loopback addresses are allowed", addr)
	}
	return nil
}

type collectionSpec struct {
	name    string
	docs    int
	docSize int
}

func newServer(named []collectionSpec, other collectionSpec, firstBatch int) *server {
	s := &server{collections: map[string]*collection{}}
	for _, spec := range named {
		c := buildCollection(len(s.byIndex)+1, spec, firstBatch)
		s.collections[spec.name] = c
		s.byIndex = append(s.byIndex, c)
	}
	s.defaultColl = buildCollection(len(s.byIndex)+1, other, firstBatch)
	s.byIndex = append(s.byIndex, s.defaultColl)

	s.okReply = newDoc(16).double("ok", 1).finish()
	s.buildInfo = newDoc(256).
		str("version", "7.0.0-canned").
		str("gitVersion", "canned").
		int32Array("versionArray", []int32{7, 0, 0, 0}).
		int32("bits", 64).
		int32("maxBsonObjectSize", maxBSONObjectSize).
		double("ok", 1).
		finish()
	s.insertOne = writeReply(1)
	s.updateReply = newDoc(48).int32("n", 0).int32("nModified", 0).double("ok", 1).finish()
	s.deleteReply = newDoc(32).int32("n", 0).double("ok", 1).finish()
	s.emptyGetMore = cursorReply("nextBatch", nil, 0, 0, 0, benchDB+".unknown")
	return s
}

func writeReply(n int32) []byte {
	return newDoc(32).int32("n", n).double("ok", 1).finish()
}

// helloReply is the handshake reply of connection id: a writable standalone.
// No topologyVersion, so drivers poll with hello instead of streaming it.
func helloReply(id int32) []byte {
	return newDoc(384).
		boolean("helloOk", true).
		boolean("isWritablePrimary", true).
		boolean("ismaster", true).
		int32("maxBsonObjectSize", maxBSONObjectSize).
		int32("maxMessageSizeBytes", maxMessageSizeBytes).
		int32("maxWriteBatchSize", maxWriteBatchSize).
		int32("logicalSessionTimeoutMinutes", 30).
		int32("connectionId", id).
		int32("minWireVersion", 0).
		int32("maxWireVersion", maxWireVersion).
		boolean("readOnly", false).
		double("ok", 1).
		finish()
}

// appendCannedDoc appends document number i of about size bytes under key k:
// {_id: i, name: "canned", n: int64(i), x: i/2, pad: "xxx..."}.
func appendCannedDoc(d *docBuilder, k string, i int, pad string) {
	off := d.begin(bsonDocument, k)
	d.int32("_id", int32(i)).str("name", "canned").int64("n", int64(i)).double("x", float64(i)/2)
	d.str("pad", pad)
	d.end(off)
}

// cannedDocBase is the size of a canned document with an empty pad.
var cannedDocBase = func() int {
	d := newDoc(128)
	appendCannedDoc(d, "d", 0, "")
	return len(d.finish()) - 5 - 3 // minus the outer document and the "d" key
}()

func cannedPad(size int) string {
	n := size - cannedDocBase
	if n < 0 {
		n = 0
	}
	return strings.Repeat("x", n)
}

// cursorReply encodes {cursor: {<field>: [docs...], id: id, ns: ns}, ok: 1} for the
// canned documents first..first+count-1.
func cursorReply(field string, spec *collectionSpec, first, count int, id int64, ns string) []byte {
	capacity := 256
	var pad string
	if spec != nil {
		pad = cannedPad(spec.docSize)
		capacity += count * (cannedDocBase + len(pad) + 8)
	}
	d := newDoc(capacity)
	cur := d.begin(bsonDocument, "cursor")
	arr := d.begin(bsonArray, field)
	for j := 0; j < count; j++ {
		appendCannedDoc(d, strconv.Itoa(j), first+j, pad)
	}
	d.end(arr)
	d.int64("id", id).str("ns", ns)
	d.end(cur)
	return d.double("ok", 1).finish()
}

// buildCollection encodes every reply of a canned collection.  index (>= 1) goes
// into the high 32 bits of its cursor ids, the next batch number into the low ones.
func buildCollection(index int, spec collectionSpec, firstBatch int) *collection {
	docLen := cannedDocBase + len(cannedPad(spec.docSize))
	c := &collection{name: spec.name, docs: spec.docs, docSize: docLen}
	ns := benchDB + "." + spec.name
	if spec.name == "" {
		ns = benchDB + ".coll"
	}
	type batch struct{ first, count int }
	var batches []batch
	start := 0
	for {
		limit := spec.docs - start
		if len(batches) == 0 && limit > firstBatch {
			limit = firstBatch
		}
		count, size := 0, 0
		for count < limit {
			add := docLen + arrayOverhead(count)
			if count > 0 && size+add > batchBudget {
				break
			}
			size += add
			count++
		}
		batches = append(batches, batch{start, count})
		start += count
		if start >= spec.docs {
			break
		}
	}
	for i, b := range batches {
		var id int64
		if i+1 < len(batches) {
			id = int64(index)<<32 | int64(i+1)
		}
		field := "nextBatch"
		if i == 0 {
			field = "firstBatch"
		}
		c.replies = append(c.replies, cursorReply(field, &spec, b.first, b.count, id, ns))
	}
	return c
}

// conn is one client connection's state; used by its goroutine only.
type conn struct {
	s         *server
	nc        net.Conn
	r         *bufio.Reader
	hello     []byte
	in        []byte
	out       []byte
	nextReqID uint32
}

// Busy-poll mode, switched by the cannedBusyPoll command (or -busy-poll at start): a
// connection that received a request within the last spinWindow reads its next one by
// polling the socket instead of blocking, so the reply does not wait for this process to
// wake up (the time that takes depends on how long it was idle, which would make a
// one-at-a-time client's latency depend on its own rhythm). Idle connections block as
// usual. Meant for one client working one request at a time: while one connection
// polls, others are only noticed by the Go runtime's periodic network poll (up to 10 ms).
var (
	busyPoll  atomic.Bool
	startBusy bool
)

const spinWindow = time.Millisecond

// pollingReader reads a connection, polling it in busy-poll mode.
type pollingReader struct {
	nc   net.Conn
	rc   syscall.RawConn // nil if the connection offers none: always block
	last time.Time       // when a read last returned data
}

func (r *pollingReader) Read(p []byte) (int, error) {
	for r.rc != nil && busyPoll.Load() && time.Since(r.last) < spinWindow {
		var n int
		var rerr error
		if err := r.rc.Read(func(fd uintptr) bool {
			n, rerr = syscall.Read(int(fd), p)
			return true // never wait for readiness here
		}); err != nil {
			return 0, err
		}
		switch {
		case rerr == syscall.EAGAIN || rerr == syscall.EINTR:
			runtime.Gosched()
		case rerr != nil:
			return 0, rerr
		case n == 0:
			return 0, io.EOF
		default:
			r.last = time.Now()
			return n, nil
		}
	}
	n, err := r.nc.Read(p)
	if n > 0 {
		r.last = time.Now()
	}
	return n, err
}

func (s *server) serve(nc net.Conn) {
	defer nc.Close()
	id := s.connections.Add(1)
	src := &pollingReader{nc: nc}
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			src.rc = rc
		}
	}
	c := &conn{
		s:     s,
		nc:    nc,
		r:     bufio.NewReaderSize(src, 64*1024),
		hello: helloReply(int32(id)),
		in:    make([]byte, 64*1024),
		out:   make([]byte, 0, smallReply+64),
	}
	if err := c.loop(); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		if !errors.Is(err, syscall.ECONNRESET) {
			log.Printf("connection %d: %v", id, err)
		}
	}
}

func (c *conn) loop() error {
	var header [16]byte
	for {
		if _, err := io.ReadFull(c.r, header[:]); err != nil {
			return err
		}
		length := int(int32(le.Uint32(header[0:])))
		requestID := le.Uint32(header[4:])
		opCode := int32(le.Uint32(header[12:]))
		if length < 16 || length > maxMessageSizeBytes {
			return fmt.Errorf("bad message length %d", length)
		}
		n := length - 16
		if n > len(c.in) {
			c.in = make([]byte, n)
		}
		body := c.in[:n]
		if _, err := io.ReadFull(c.r, body); err != nil {
			return err
		}
		var err error
		switch opCode {
		case opMsg:
			err = c.handleMsg(requestID, body)
		case opQuery:
			err = c.handleQuery(requestID, body)
		default:
			err = fmt.Errorf("unsupported opcode %d", opCode)
		}
		if err != nil {
			return err
		}
		if len(c.in) > 1<<20 {
			c.in = make([]byte, 64*1024) // do not keep a huge insert's buffer around
		}
	}
}

// handleMsg answers an OP_MSG: flags, then sections (kind 0: the command
// document; kind 1: size, identifier and a document sequence).
func (c *conn) handleMsg(requestID uint32, body []byte) error {
	if len(body) < 5 {
		return errors.New("short OP_MSG")
	}
	flags := le.Uint32(body)
	if flags&flagChecksumPresent != 0 {
		if len(body) < 9 {
			return errors.New("short OP_MSG with checksum")
		}
		body = body[:len(body)-4]
	}
	var command []byte
	seqDocs := 0
	for pos := 4; pos < len(body); {
		kind := body[pos]
		pos++
		if pos+4 > len(body) {
			return errors.New("truncated OP_MSG section")
		}
		size := int(int32(le.Uint32(body[pos:])))
		if size < 4 || pos+size > len(body) {
			return fmt.Errorf("bad OP_MSG section size %d", size)
		}
		switch kind {
		case 0:
			command = body[pos : pos+size]
		case 1:
			seqDocs += countSequence(body[pos+4 : pos+size])
		default:
			return fmt.Errorf("unsupported OP_MSG section kind %d", kind)
		}
		pos += size
	}
	if command == nil {
		return errors.New("OP_MSG without a command document")
	}
	reply := c.s.dispatch(c, command, seqDocs)
	if flags&flagMoreToCome != 0 {
		return nil // unacknowledged: the client expects no reply
	}
	return c.writeMsg(requestID, reply)
}

// countSequence counts the documents of a kind-1 section after its size field.
func countSequence(seq []byte) int {
	i := 0
	for i < len(seq) && seq[i] != 0 {
		i++
	}
	n := 0
	for pos := i + 1; pos+4 <= len(seq); n++ {
		size := int(int32(le.Uint32(seq[pos:])))
		if size < 5 {
			break
		}
		pos += size
	}
	return n
}

// handleQuery answers a legacy OP_QUERY command (flags, "db.$cmd", skip, limit,
// command document) with an OP_REPLY.
func (c *conn) handleQuery(requestID uint32, body []byte) error {
	if len(body) < 4 {
		return errors.New("short OP_QUERY")
	}
	end := 4
	for end < len(body) && body[end] != 0 {
		end++
	}
	if end+9 > len(body) {
		return errors.New("truncated OP_QUERY")
	}
	namespace := string(body[4:end])
	command := body[end+9:]
	var reply []byte
	var responseFlags uint32
	if strings.HasSuffix(namespace, ".$cmd") {
		reply = c.s.dispatch(c, command, 0)
	} else {
		responseFlags = 2 // QueryFailure
		reply = newDoc(128).str("$err", "cannedserver only answers commands").int32("code", 2).finish()
	}
	total := 16 + 20 + len(reply)
	out := c.out[:0]
	out = le.AppendUint32(out, uint32(total))
	out = le.AppendUint32(out, c.requestID())
	out = le.AppendUint32(out, requestID)
	out = le.AppendUint32(out, opReply)
	out = le.AppendUint32(out, responseFlags)
	out = le.AppendUint64(out, 0) // cursorID
	out = le.AppendUint32(out, 0) // startingFrom
	out = le.AppendUint32(out, 1) // numberReturned
	bufs := net.Buffers{out, reply}
	_, err := bufs.WriteTo(c.nc)
	return err
}

func (c *conn) requestID() uint32 {
	c.nextReqID++
	return c.nextReqID
}

// writeMsg sends doc as an OP_MSG reply to requestID.
func (c *conn) writeMsg(responseTo uint32, doc []byte) error {
	total := 16 + 5 + len(doc)
	out := c.out[:0]
	out = le.AppendUint32(out, uint32(total))
	out = le.AppendUint32(out, c.requestID())
	out = le.AppendUint32(out, responseTo)
	out = le.AppendUint32(out, opMsg)
	out = le.AppendUint32(out, 0) // flags
	out = append(out, 0)          // section kind 0
	if len(doc) <= smallReply {
		out = append(out, doc...)
		c.out = out
		_, err := c.nc.Write(out)
		return err
	}
	c.out = out
	bufs := net.Buffers{out, doc}
	_, err := bufs.WriteTo(c.nc)
	return err
}

// dispatch returns the reply document for a command document.
func (s *server) dispatch(c *conn, command []byte, seqDocs int) []byte {
	t, key, value, ok := firstElement(command)
	if !ok {
		s.counts[countOther].Add(1)
		return errorReply("empty or malformed command document", 9, "FailedToParse")
	}
	switch string(key) {
	case "hello", "isMaster", "ismaster":
		s.counts[countHello].Add(1)
		return c.hello
	case "ping":
		s.counts[countPing].Add(1)
		return s.okReply
	case "endSessions":
		s.counts[countEndSessions].Add(1)
		return s.okReply
	case "killCursors":
		s.counts[countKillCursors].Add(1)
		return s.okReply
	case "buildInfo", "buildinfo":
		s.counts[countBuildInfo].Add(1)
		return s.buildInfo
	case "find":
		s.counts[countFind].Add(1)
		coll := s.defaultColl
		if t == bsonString {
			if named, found := s.collections[string(value)]; found {
				coll = named
			}
		}
		return coll.replies[0]
	case "getMore":
		s.counts[countGetMore].Add(1)
		if t == bsonInt64 {
			id := int64(le.Uint64(value))
			index, next := int(id>>32), int(id&0xffffffff)
			if index >= 1 && index <= len(s.byIndex) {
				replies := s.byIndex[index-1].replies
				if next >= 1 && next < len(replies) {
					return replies[next]
				}
			}
		}
		return s.emptyGetMore
	case "insert":
		s.counts[countInsert].Add(1)
		if seqDocs == 1 {
			return s.insertOne
		}
		return writeReply(int32(seqDocs))
	case "update":
		s.counts[countUpdate].Add(1)
		return s.updateReply
	case "cannedBusyPoll":
		// {cannedBusyPoll: true|false}: switch busy-poll mode for every connection.
		s.counts[countOther].Add(1)
		if t != bsonBool || len(value) != 1 {
			return errorReply("cannedBusyPoll takes true or false", 14, "TypeMismatch")
		}
		busyPoll.Store(value[0] == 1)
		return s.okReply
	case "delete":
		s.counts[countDelete].Add(1)
		return s.deleteReply
	}
	s.counts[countOther].Add(1)
	return errorReply(fmt.Sprintf("no such command: '%s'", key), 59, "CommandNotFound")
}

func errorReply(msg string, code int32, codeName string) []byte {
	return newDoc(128).
		double("ok", 0).
		str("errmsg", msg).
		int32("code", code).
		str("codeName", codeName).
		finish()
}

// summary describes the requests served so far.
func (s *server) summary() string {
	var parts []string
	var total int64
	for i := range s.counts {
		if n := s.counts[i].Load(); n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", counterNames[i], n))
			total += n
		}
	}
	return fmt.Sprintf("%d requests on %d connections (%s)",
		total, s.connections.Load(), strings.Join(parts, ", "))
}

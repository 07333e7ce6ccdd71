// Package npvdb is a small Go client of the npvdb vector database server.
//
// The gRPC code (import path "npvdb/v1", package npvdbv1) is generated at
// build time from protos/npvdb/v1/npvdb.proto with Debian's protoc-gen-go
// (--go_out=plugins=grpc); this package adds the float32 <-> bytes layout
// of the contract, payloads as Go maps, a filter builder and a few checks.
// Vectors are flat []float32 slices, row-major: n rows of dim values.
//
// A server holds named collections. The data methods of Client work on the
// collection "default"; Client.Collection(name) gives a handle with the
// same methods on another one.
//
// Errors are the gRPC status errors of the server (use status.Code(err)
// and status.Convert(err).Message()); a bad payload or filter is caught in
// the client, before anything is sent, as an InvalidArgument status error
// naming the culprit.
package npvdb

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/golang/protobuf/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "npvdb/v1"
)

// DefaultBatchBytes is the target size of one Insert stream message.
const DefaultBatchBytes = 4 << 20

// DefaultCollection is the collection of the Client's own data methods,
// sent on the wire as "".
const DefaultCollection = "default"

// Scroll page sizes: the default and the contract's maximum.
const (
	DefaultScrollBatch = 256
	MaxScrollBatch     = 16384
)

// Client is a connection to one npvdb server; safe for concurrent use. Its
// data methods (Init, Insert, GetClosest, ...) work on the collection
// "default"; see Collection for the others.
type Client struct {
	conn *grpc.ClientConn
	rpc  pb.VectorDBClient
	def  *Collection
}

// Dial connects to addr ("host:port"; "" = EnvAddress(): $NPVDB_ADDRESS,
// else 127.0.0.1:50051). opts are this package's WithTLS and WithToken and
// any grpc.DialOption. With none but WithToken the connection is plaintext
// (grpc.WithInsecure is added); with WithTLS it is TLS; with grpc options
// of the caller's own, the caller sets the transport (grpc.WithInsecure or
// grpc.WithTransportCredentials), as before:
//
//	c, err := npvdb.Dial(ctx, "db.example:50051",
//		npvdb.WithTLS("ca.pem", "", ""), npvdb.WithToken(os.Getenv("NPVDB_TOKEN")))
//
// The connection is made lazily: a server that is not there, or a failed
// TLS handshake, shows as an Unavailable status error on the first call.
func Dial(ctx context.Context, addr string, opts ...grpc.DialOption) (*Client, error) {
	if addr == "" {
		addr = EnvAddress()
	}
	opts, err := dialOptions(opts)
	if err != nil {
		return nil, err
	}
	opts = append(opts, grpc.WithDefaultCallOptions(
		grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(math.MaxInt32)))
	conn, err := grpc.DialContext(ctx, addr, opts...)
	if err != nil {
		return nil, err
	}
	c := &Client{conn: conn, rpc: pb.NewVectorDBClient(conn)}
	c.def = &Collection{c: c}
	return c, nil
}

// Close releases the connection (and so every Collection handle of it).
func (c *Client) Close() error { return c.conn.Close() }

// RPC gives the generated client, for calls this package does not wrap.
func (c *Client) RPC() pb.VectorDBClient { return c.rpc }

// ---- collections ----

// Collection is a handle on one named collection of a Client's server,
// with the Client's data methods; it shares the Client's connection and
// is safe for concurrent use. It is only a name: the collection need not
// exist yet (Init creates it), and a call on one that does not exist is a
// NotFound status error.
type Collection struct {
	c    *Client
	name string // as sent: "" for "default"
}

// Collection returns a handle on the collection name: 1..255 bytes of
// [A-Za-z0-9_.-], checked by the server; "" and "default" mean the
// collection of the Client's own methods.
func (c *Client) Collection(name string) *Collection {
	return &Collection{c: c, name: wireName(name)}
}

func wireName(name string) string {
	if name == DefaultCollection {
		return ""
	}
	return name
}

// Name is the collection's name ("default" for the Client's own).
func (h *Collection) Name() string {
	if h.name == "" {
		return DefaultCollection
	}
	return h.name
}

// ListCollections describes every collection on the server (name, dim,
// metric, vector count), sorted by name.
func (c *Client) ListCollections(ctx context.Context) ([]*pb.CollectionInfo, error) {
	r, err := c.rpc.ListCollections(ctx, &pb.ListCollectionsRequest{})
	if err != nil {
		return nil, err
	}
	return r.Collections, nil
}

// DropCollection drops the collection name and frees its memory (its disk
// goes with the next snapshot); it returns the number of vectors it held.
// A collection that does not exist is a NotFound status error.
func (c *Client) DropCollection(ctx context.Context, name string) (uint64, error) {
	r, err := c.rpc.DropCollection(ctx, &pb.DropCollectionRequest{Collection: wireName(name)})
	if err != nil {
		return 0, err
	}
	return r.Vectors, nil
}

// Drop drops this collection: DropCollection(ctx, h.Name()).
func (h *Collection) Drop(ctx context.Context) (uint64, error) {
	return h.c.DropCollection(ctx, h.name)
}

// ---- the Client's data methods: those of the collection "default" ----

// Init creates the collection "default"; see Collection.Init.
func (c *Client) Init(ctx context.Context, dim int, o InitOptions) (*pb.InitReply, error) {
	return c.def.Init(ctx, dim, o)
}

// Insert upserts into the collection "default"; see Collection.Insert.
func (c *Client) Insert(ctx context.Context, keys []string, vectors []float32) (*pb.InsertReply, error) {
	return c.def.Insert(ctx, keys, vectors)
}

// InsertWith upserts into the collection "default"; see Collection.InsertWith.
func (c *Client) InsertWith(ctx context.Context, keys []string, vectors []float32, o InsertOptions) (*pb.InsertReply, error) {
	return c.def.InsertWith(ctx, keys, vectors, o)
}

// GetClosest searches the collection "default"; see Collection.GetClosest.
func (c *Client) GetClosest(ctx context.Context, queries []float32, dim, k, nprobe int) ([]Hits, error) {
	return c.def.GetClosest(ctx, queries, dim, k, nprobe)
}

// GetClosestWith searches the collection "default"; see Collection.GetClosestWith.
func (c *Client) GetClosestWith(ctx context.Context, queries []float32, dim, k int, o SearchOptions) ([]Hits, error) {
	return c.def.GetClosestWith(ctx, queries, dim, k, o)
}

// Search searches the collection "default"; see Collection.Search.
func (c *Client) Search(ctx context.Context, queries []float32, dim, k int, o SearchOptions) ([]Hits, error) {
	return c.def.Search(ctx, queries, dim, k, o)
}

// Get reads the collection "default"; see Collection.Get.
func (c *Client) Get(ctx context.Context, keys []string) (found []string, vectors []float32, missing []string, err error) {
	return c.def.Get(ctx, keys)
}

// GetWith reads the collection "default"; see Collection.GetWith.
func (c *Client) GetWith(ctx context.Context, keys []string, o GetOptions) (*GetResult, error) {
	return c.def.GetWith(ctx, keys, o)
}

// Delete removes keys of the collection "default"; see Collection.Delete.
func (c *Client) Delete(ctx context.Context, keys []string) (uint64, error) {
	return c.def.Delete(ctx, keys)
}

// Info describes the collection "default"; see Collection.Info.
func (c *Client) Info(ctx context.Context) (*pb.InfoReply, error) {
	return c.def.Info(ctx)
}

// Snapshot writes a snapshot of every collection; see Collection.Snapshot.
func (c *Client) Snapshot(ctx context.Context) (*pb.SnapshotReply, error) {
	return c.def.Snapshot(ctx)
}

// Count counts in the collection "default"; see Collection.Count.
func (c *Client) Count(ctx context.Context, filter *Filter) (uint64, error) {
	return c.def.Count(ctx, filter)
}

// Scroll pages through the collection "default"; see Collection.Scroll.
func (c *Client) Scroll(ctx context.Context, o ScrollOptions) *Scroller {
	return c.def.Scroll(ctx, o)
}

// ---- data methods ----

// InitOptions are the optional fields of Init.
type InitOptions struct {
	Metric        pb.Metric // METRIC_UNSPECIFIED: the server's default (cosine)
	NShards       uint32    // 0: automatic
	Replace       bool      // drop an existing collection first
	DefaultNprobe uint32    // 0: the server's default
	Train         []float32 // optional training sample, rows of dim values
}

// Init creates the collection, of dim-dimensional vectors. Without
// Replace, an existing collection is an AlreadyExists status error.
func (h *Collection) Init(ctx context.Context, dim int, o InitOptions) (*pb.InitReply, error) {
	if dim <= 0 || len(o.Train)%dim != 0 {
		return nil, fmt.Errorf("npvdb: training sample of %d floats is not rows of dim %d",
			len(o.Train), dim)
	}
	return h.c.rpc.Init(ctx, &pb.InitRequest{
		Dim: uint32(dim), Metric: o.Metric, NShards: o.NShards, Replace: o.Replace,
		DefaultNprobe: o.DefaultNprobe, TrainVectors: Bytes(o.Train), Collection: h.name,
	})
}

// InsertOptions are the optional fields of InsertWith.
type InsertOptions struct {
	// One per key (Payloads[i] belongs to keys[i]); a nil entry or nil
	// Payloads: no payload. An upsert replaces the payload with the vector,
	// so a key inserted again without a payload has none afterwards.
	Payloads []Payload
}

// Insert upserts vectors (len(keys) rows) without payloads; see InsertWith.
func (h *Collection) Insert(ctx context.Context, keys []string, vectors []float32) (*pb.InsertReply, error) {
	return h.InsertWith(ctx, keys, vectors, InsertOptions{})
}

// InsertWith upserts vectors (len(keys) rows) and their payloads in one
// client-streaming call of messages of about DefaultBatchBytes. Every
// payload is checked first: a bad one is an InvalidArgument status error
// naming it (`payloads[3]["tags"]: ...`) and nothing is sent.
func (h *Collection) InsertWith(ctx context.Context, keys []string, vectors []float32, o InsertOptions) (*pb.InsertReply, error) {
	if len(keys) == 0 {
		return &pb.InsertReply{}, nil
	}
	if len(vectors)%len(keys) != 0 {
		return nil, fmt.Errorf("npvdb: %d floats are not %d rows", len(vectors), len(keys))
	}
	var pls []*pb.Payload
	if o.Payloads != nil {
		if len(o.Payloads) != len(keys) {
			return nil, status.Errorf(codes.InvalidArgument, "npvdb: %d payloads for %d keys",
				len(o.Payloads), len(keys))
		}
		pls = make([]*pb.Payload, len(keys))
		for i, p := range o.Payloads {
			var err error
			if pls[i], err = payloadPB(fmt.Sprintf("payloads[%d]", i), p); err != nil {
				return nil, err
			}
		}
	}
	dim := len(vectors) / len(keys)
	stream, err := h.c.rpc.Insert(ctx)
	if err != nil {
		return nil, err
	}
	for i := 0; i < len(keys); {
		// Rows up to about DefaultBatchBytes, counting each key's length
		// and payload.
		j, size, withPayload := i, 0, false
		for j < len(keys) {
			row := 4*dim + len(keys[j]) + 4
			if pls != nil {
				row += proto.Size(pls[j]) + 4
			}
			if j > i && size+row > DefaultBatchBytes {
				break
			}
			size += row
			withPayload = withPayload || pls != nil && len(pls[j].Fields) > 0
			j++
		}
		msg := &pb.InsertRequest{Keys: keys[i:j], Vectors: Bytes(vectors[i*dim : j*dim]),
			Collection: h.name}
		if withPayload { // else none for the whole message
			msg.Payloads = pls[i:j]
		}
		i = j
		if err := stream.Send(msg); err != nil {
			if err == io.EOF { // the server ended the call: its status says why
				break
			}
			return nil, err
		}
	}
	return stream.CloseAndRecv()
}

// Hits are one query's results, nearest first (at most k of them: fewer
// when the collection, or the set passing the filter, holds fewer).
type Hits struct {
	Keys      []string
	Distances []float32
	Payloads  []Payload // with SearchOptions.WithPayload: one per key ({} for none)
}

// SearchOptions are the optional fields of GetClosestWith and Search.
type SearchOptions struct {
	Nprobe int // shards probed per query; 0: the collection's default
	// Only vectors passing the filter are candidates: the answer is the k
	// nearest among them. nil: no filter.
	Filter      *Filter
	WithPayload bool // fill Hits.Payloads
}

// GetClosest finds the k nearest vectors of each query (rows of dim
// values). nprobe 0 uses the collection's default.
func (h *Collection) GetClosest(ctx context.Context, queries []float32, dim, k, nprobe int) ([]Hits, error) {
	return h.GetClosestWith(ctx, queries, dim, k, SearchOptions{Nprobe: nprobe})
}

// searchArgs checks the arguments of a search and converts the filter;
// q is the number of queries.
func searchArgs(queries []float32, dim, k int, o SearchOptions) (q int, f *pb.Filter, err error) {
	if dim <= 0 || len(queries) == 0 || len(queries)%dim != 0 {
		return 0, nil, fmt.Errorf("npvdb: %d floats are not queries of dim %d", len(queries), dim)
	}
	if k < 0 || o.Nprobe < 0 {
		return 0, nil, fmt.Errorf("npvdb: negative k or nprobe")
	}
	f, err = filterPB(o.Filter)
	return len(queries) / dim, f, err
}

// GetClosestWith finds the k nearest vectors of each query (rows of dim
// values) among those passing o.Filter, one streamed reply per query.
func (h *Collection) GetClosestWith(ctx context.Context, queries []float32, dim, k int, o SearchOptions) ([]Hits, error) {
	q, f, err := searchArgs(queries, dim, k, o)
	if err != nil {
		return nil, err
	}
	stream, err := h.c.rpc.GetClosest(ctx, &pb.GetClosestRequest{
		Queries: Bytes(queries), K: uint32(k), Nprobe: uint32(o.Nprobe), Dim: uint32(dim),
		Collection: h.name, Filter: f, WithPayload: o.WithPayload})
	if err != nil {
		return nil, err
	}
	out := make([]Hits, q)
	seen := make([]bool, q)
	for n := 0; ; n++ {
		r, err := stream.Recv()
		if err == io.EOF {
			if n != q {
				return nil, fmt.Errorf("npvdb: %d replies for %d queries", n, q)
			}
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		i := int(r.QueryIndex)
		if i >= q || seen[i] || len(r.Distances) != len(r.Keys) {
			return nil, fmt.Errorf("npvdb: reply for query %d of %d with %d keys, %d distances",
				i, q, len(r.Keys), len(r.Distances))
		}
		seen[i] = true
		out[i] = Hits{Keys: r.Keys, Distances: r.Distances}
		if o.WithPayload {
			if out[i].Payloads, err = payloadsFromProto("GetClosest", r.Payloads, len(r.Keys)); err != nil {
				return nil, err
			}
		}
	}
}

// Search is GetClosestWith in one unary call with one packed reply: fewer
// messages for many small queries. The reply must fit the server's
// message size limit (a ResourceExhausted status error says when it does
// not): send fewer queries at a time then.
func (h *Collection) Search(ctx context.Context, queries []float32, dim, k int, o SearchOptions) ([]Hits, error) {
	q, f, err := searchArgs(queries, dim, k, o)
	if err != nil {
		return nil, err
	}
	r, err := h.c.rpc.Search(ctx, &pb.SearchRequest{
		Queries: Bytes(queries), K: uint32(k), Nprobe: uint32(o.Nprobe), Dim: uint32(dim),
		Collection: h.name, Filter: f, WithPayload: o.WithPayload})
	if err != nil {
		return nil, err
	}
	rk := int(r.K)
	dist, err := Floats(r.Distances)
	if err != nil {
		return nil, err
	}
	if len(r.Counts) != q || len(dist) != q*rk {
		return nil, fmt.Errorf("npvdb: Search reply with %d counts, %d distances for %d queries of k %d",
			len(r.Counts), len(dist), q, rk)
	}
	var pls []Payload
	if o.WithPayload {
		if pls, err = payloadsFromProto("Search", r.Payloads, len(r.Keys)); err != nil {
			return nil, err
		}
	}
	out := make([]Hits, q)
	at := 0
	for i, c := range r.Counts {
		n := int(c)
		if n > rk || at+n > len(r.Keys) {
			return nil, fmt.Errorf("npvdb: Search reply: %d hits for query %d of k %d, %d keys",
				n, i, rk, len(r.Keys))
		}
		// Capped: appending to one query's hits never writes into the next.
		out[i] = Hits{Keys: r.Keys[at : at+n : at+n], Distances: dist[i*rk : i*rk+n : i*rk+n]}
		if pls != nil {
			out[i].Payloads = pls[at : at+n : at+n]
		}
		at += n
	}
	if at != len(r.Keys) {
		return nil, fmt.Errorf("npvdb: Search reply: %d keys for %d hits", len(r.Keys), at)
	}
	return out, nil
}

// Get returns the stored vectors of the keys found (flat, rows in the
// order of found: request order) and the keys that are missing.
func (h *Collection) Get(ctx context.Context, keys []string) (found []string, vectors []float32, missing []string, err error) {
	r, err := h.GetWith(ctx, keys, GetOptions{})
	if err != nil {
		return nil, nil, nil, err
	}
	return r.Keys, r.Vectors, r.Missing, nil
}

// GetOptions are the optional fields of GetWith.
type GetOptions struct {
	WithPayload bool // fill GetResult.Payloads
}

// GetResult is what GetWith finds.
type GetResult struct {
	Keys     []string  // the keys found, in request order
	Vectors  []float32 // their vectors, len(Keys) rows, flat (normalised for cosine)
	Payloads []Payload // with WithPayload: one per key found ({} for none)
	Missing  []string  // the keys not stored
}

// GetWith returns the stored vectors, and with o.WithPayload the payloads,
// of the keys found, and the keys that are missing.
func (h *Collection) GetWith(ctx context.Context, keys []string, o GetOptions) (*GetResult, error) {
	r, err := h.c.rpc.Get(ctx, &pb.GetRequest{Keys: keys, Collection: h.name,
		WithPayload: o.WithPayload})
	if err != nil {
		return nil, err
	}
	out := &GetResult{Keys: r.Keys, Missing: r.Missing}
	if out.Vectors, err = Floats(r.Vectors); err != nil {
		return nil, err
	}
	if o.WithPayload {
		if out.Payloads, err = payloadsFromProto("Get", r.Payloads, len(r.Keys)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Delete removes keys and returns how many existed.
func (h *Collection) Delete(ctx context.Context, keys []string) (uint64, error) {
	r, err := h.c.rpc.Delete(ctx, &pb.DeleteRequest{Keys: keys, Collection: h.name})
	if err != nil {
		return 0, err
	}
	return r.Deleted, nil
}

// Info describes the collection (Initialized false if it does not exist).
func (h *Collection) Info(ctx context.Context) (*pb.InfoReply, error) {
	return h.c.rpc.Info(ctx, &pb.InfoRequest{Collection: h.name})
}

// Snapshot writes a consistent snapshot of every collection into the
// server's data directory; a NotFound status error if this collection does
// not exist.
func (h *Collection) Snapshot(ctx context.Context) (*pb.SnapshotReply, error) {
	return h.c.rpc.Snapshot(ctx, &pb.SnapshotRequest{Collection: h.name})
}

// Count returns how many vectors pass filter (nil: all of them).
func (h *Collection) Count(ctx context.Context, filter *Filter) (uint64, error) {
	f, err := filterPB(filter)
	if err != nil {
		return 0, err
	}
	r, err := h.c.rpc.Count(ctx, &pb.CountRequest{Collection: h.name, Filter: f})
	if err != nil {
		return 0, err
	}
	return r.Count, nil
}

// ---- scroll ----

// ScrollOptions are the optional fields of Scroll.
type ScrollOptions struct {
	Filter      *Filter // only the vectors passing it; nil: all
	WithVectors bool    // fill Point.Vector
	WithPayload bool    // fill Point.Payload
	BatchSize   int     // keys per Scroll call: 0 is DefaultScrollBatch; at most MaxScrollBatch
}

// Point is one stored vector as Scroll returns it.
type Point struct {
	Key     string
	Vector  []float32 // with WithVectors (normalised for cosine), else nil
	Payload Payload   // with WithPayload ({} for none), else nil
}

// Scroller pages through a collection with the Scroll RPC, in the manner
// of bufio.Scanner:
//
//	s := h.Scroll(ctx, npvdb.ScrollOptions{WithPayload: true})
//	for s.Next() {
//		p := s.Point()
//		...
//	}
//	if err := s.Err(); err != nil { ... }
//
// Every vector stored for the whole scroll is visited at least once (one
// written meanwhile may or may not be); the order is the server's. Not for
// concurrent use.
type Scroller struct {
	ctx  context.Context
	h    *Collection
	o    ScrollOptions
	req  *pb.ScrollRequest
	page *pb.ScrollReply
	vecs []float32
	dim  int
	i    int  // the next key of page
	last bool // page is the last one
	cur  Point
	err  error
}

// Scroll returns a Scroller over the vectors passing o.Filter; it calls
// the server from Next, page by page.
func (h *Collection) Scroll(ctx context.Context, o ScrollOptions) *Scroller {
	s := &Scroller{ctx: ctx, h: h, o: o}
	if o.BatchSize < 0 || o.BatchSize > MaxScrollBatch {
		s.err = status.Errorf(codes.InvalidArgument, "npvdb: scroll batch size %d, must be 0..%d",
			o.BatchSize, MaxScrollBatch)
		return s
	}
	f, err := filterPB(o.Filter)
	if err != nil {
		s.err = err
		return s
	}
	limit := o.BatchSize
	if limit == 0 {
		limit = DefaultScrollBatch
	}
	s.req = &pb.ScrollRequest{Collection: h.name, Filter: f, Limit: uint32(limit),
		WithVectors: o.WithVectors, WithPayload: o.WithPayload}
	return s
}

// Next advances to the next point, fetching a page when needed; false at
// the end or on an error (see Err).
func (s *Scroller) Next() bool {
	for s.err == nil {
		if s.page != nil && s.i < len(s.page.Keys) {
			s.cur = Point{Key: s.page.Keys[s.i]}
			if s.o.WithVectors {
				s.cur.Vector = s.vecs[s.i*s.dim : (s.i+1)*s.dim : (s.i+1)*s.dim]
			}
			if s.o.WithPayload {
				s.cur.Payload = PayloadFromProto(s.page.Payloads[s.i])
			}
			s.i++
			return true
		}
		if s.last {
			return false
		}
		s.err = s.fetch()
	}
	return false
}

// fetch gets the next page.
func (s *Scroller) fetch() error {
	r, err := s.h.c.rpc.Scroll(s.ctx, s.req)
	if err != nil {
		return err
	}
	n := len(r.Keys)
	s.vecs, s.dim = nil, 0
	if s.o.WithVectors {
		if s.vecs, err = Floats(r.Vectors); err != nil {
			return err
		}
		if n > 0 {
			s.dim = len(s.vecs) / n
		}
		if s.dim*n != len(s.vecs) {
			return fmt.Errorf("npvdb: Scroll reply: %d floats for %d keys", len(s.vecs), n)
		}
	}
	if s.o.WithPayload && len(r.Payloads) != n {
		return fmt.Errorf("npvdb: Scroll reply: %d payloads for %d keys", len(r.Payloads), n)
	}
	if n == 0 && len(r.NextCursor) > 0 && bytes.Equal(r.NextCursor, s.req.Cursor) {
		return fmt.Errorf("npvdb: Scroll: the server repeats an empty page")
	}
	s.page, s.i = r, 0
	s.last = len(r.NextCursor) == 0
	s.req.Cursor = r.NextCursor
	return nil
}

// Point is the point Next moved to.
func (s *Scroller) Point() Point { return s.cur }

// Err is the error that ended the scroll, nil at its end.
func (s *Scroller) Err() error { return s.err }

// ---- vector layout ----

// Bytes lays out float32 values as the contract wants them: little-endian
// IEEE-754, in order.
func Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

// Floats is the inverse of Bytes.
func Floats(b []byte) ([]float32, error) {
	if len(b)%4 != 0 {
		return nil, fmt.Errorf("npvdb: %d bytes are not float32 values", len(b))
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v, nil
}

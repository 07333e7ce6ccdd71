// Package npvdb is a small Go client of the npvdb vector database server.
//
// The gRPC code (import path "npvdb/v1", package npvdbv1) is generated at
// build time from protos/npvdb/v1/npvdb.proto with Debian's protoc-gen-go
// (--go_out=plugins=grpc); this package adds the float32 <-> bytes layout
// of the contract and a few checks. Vectors are flat []float32 slices,
// row-major: n rows of dim values. Errors are the gRPC status errors of the
// server (use status.Code(err) and status.Convert(err).Message()).
package npvdb

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"google.golang.org/grpc"

	pb "npvdb/v1"
)

// DefaultBatchBytes is the target size of one Insert stream message.
const DefaultBatchBytes = 4 << 20

// Client is a connection to one npvdb server; safe for concurrent use.
type Client struct {
	conn *grpc.ClientConn
	rpc  pb.VectorDBClient
}

// Dial connects to addr ("host:port"). Without options the connection is
// plaintext (grpc.WithInsecure); pass credentials for TLS.
func Dial(ctx context.Context, addr string, opts ...grpc.DialOption) (*Client, error) {
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithInsecure()}
	}
	opts = append(opts, grpc.WithDefaultCallOptions(
		grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(math.MaxInt32)))
	conn, err := grpc.DialContext(ctx, addr, opts...)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, rpc: pb.NewVectorDBClient(conn)}, nil
}

// Close releases the connection.
func (c *Client) Close() error { return c.conn.Close() }

// RPC gives the generated client, for calls this package does not wrap.
func (c *Client) RPC() pb.VectorDBClient { return c.rpc }

// InitOptions are the optional fields of Init.
type InitOptions struct {
	Metric        pb.Metric // METRIC_UNSPECIFIED: the server's default (cosine)
	NShards       uint32    // 0: automatic
	Replace       bool      // drop an existing collection first
	DefaultNprobe uint32    // 0: the server's default
	Train         []float32 // optional training sample, rows of dim values
}

// Init creates the collection of dim-dimensional vectors.
func (c *Client) Init(ctx context.Context, dim int, o InitOptions) (*pb.InitReply, error) {
	if dim <= 0 || len(o.Train)%dim != 0 {
		return nil, fmt.Errorf("npvdb: training sample of %d floats is not rows of dim %d",
			len(o.Train), dim)
	}
	return c.rpc.Init(ctx, &pb.InitRequest{
		Dim: uint32(dim), Metric: o.Metric, NShards: o.NShards, Replace: o.Replace,
		DefaultNprobe: o.DefaultNprobe, TrainVectors: Bytes(o.Train),
	})
}

// Insert upserts vectors (len(keys) rows) in one client-streaming call of
// messages of about DefaultBatchBytes.
func (c *Client) Insert(ctx context.Context, keys []string, vectors []float32) (*pb.InsertReply, error) {
	if len(keys) == 0 {
		return &pb.InsertReply{}, nil
	}
	if len(vectors)%len(keys) != 0 {
		return nil, fmt.Errorf("npvdb: %d floats are not %d rows", len(vectors), len(keys))
	}
	dim := len(vectors) / len(keys)
	stream, err := c.rpc.Insert(ctx)
	if err != nil {
		return nil, err
	}
	for i := 0; i < len(keys); {
		// Rows up to about DefaultBatchBytes, counting each key's length.
		j, size := i, 0
		for j < len(keys) && (j == i || size+4*dim+len(keys[j])+4 <= DefaultBatchBytes) {
			size += 4*dim + len(keys[j]) + 4
			j++
		}
		msg := &pb.InsertRequest{Keys: keys[i:j], Vectors: Bytes(vectors[i*dim : j*dim])}
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

// Hits are one query's results, nearest first (at most k of them).
type Hits struct {
	Keys      []string
	Distances []float32
}

// GetClosest finds the k nearest vectors of each query (rows of dim
// values). nprobe 0 uses the collection's default.
func (c *Client) GetClosest(ctx context.Context, queries []float32, dim, k, nprobe int) ([]Hits, error) {
	if dim <= 0 || len(queries) == 0 || len(queries)%dim != 0 {
		return nil, fmt.Errorf("npvdb: %d floats are not queries of dim %d", len(queries), dim)
	}
	if k < 0 || nprobe < 0 {
		return nil, fmt.Errorf("npvdb: negative k or nprobe")
	}
	q := len(queries) / dim
	stream, err := c.rpc.GetClosest(ctx, &pb.GetClosestRequest{
		Queries: Bytes(queries), K: uint32(k), Nprobe: uint32(nprobe)})
	if err != nil {
		return nil, err
	}
	out := make([]Hits, q)
	seen := 0
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		i := int(r.QueryIndex)
		if i >= q || len(r.Distances) != len(r.Keys) {
			return nil, fmt.Errorf("npvdb: reply for query %d of %d with %d keys, %d distances (dim mismatch?)",
				i, q, len(r.Keys), len(r.Distances))
		}
		out[i] = Hits{Keys: r.Keys, Distances: r.Distances}
		seen++
	}
	if seen != q {
		return nil, fmt.Errorf("npvdb: %d replies for %d queries", seen, q)
	}
	return out, nil
}

// Get returns the stored vectors of the keys found (flat, rows in the
// order of found) and the keys that are missing.
func (c *Client) Get(ctx context.Context, keys []string) (found []string, vectors []float32, missing []string, err error) {
	r, err := c.rpc.Get(ctx, &pb.GetRequest{Keys: keys})
	if err != nil {
		return nil, nil, nil, err
	}
	vectors, err = Floats(r.Vectors)
	return r.Keys, vectors, r.Missing, err
}

// Delete removes keys and returns how many existed.
func (c *Client) Delete(ctx context.Context, keys []string) (uint64, error) {
	r, err := c.rpc.Delete(ctx, &pb.DeleteRequest{Keys: keys})
	if err != nil {
		return 0, err
	}
	return r.Deleted, nil
}

// Info describes the collection.
func (c *Client) Info(ctx context.Context) (*pb.InfoReply, error) {
	return c.rpc.Info(ctx, &pb.InfoRequest{})
}

// Snapshot writes a consistent snapshot into the server's data directory.
func (c *Client) Snapshot(ctx context.Context) (*pb.SnapshotReply, error) {
	return c.rpc.Snapshot(ctx, &pb.SnapshotRequest{})
}

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

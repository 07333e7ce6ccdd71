// Command example creates its own collection (go_example), inserts vectors,
// queries it and prints what it finds; then does the same with payloads and
// a filter in a second one (go_example_payloads), counts, scrolls, and drops
// both. It never touches other collections (the demo's "default" among
// them); if one of its collections exists, it stops with a message unless
// -replace is given:
//
//	example -addr 127.0.0.1:50051 -n 2000 -dim 32
//	NPVDB_TOKEN=... example -addr db.example:50051 -tls-ca ca.pem
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"npvdb"
	pb "npvdb/v1"
)

func main() {
	addr := flag.String("addr", npvdb.EnvAddress(), "npvdb server host:port (default $NPVDB_ADDRESS, else 127.0.0.1:50051)")
	ca := flag.String("tls-ca", "", "connect with TLS, trusting this PEM CA file")
	cert := flag.String("tls-cert", "", "client certificate (PEM) for mutual TLS, with -tls-key")
	key := flag.String("tls-key", "", "client key (PEM) for mutual TLS")
	token := flag.String("token", "", "bearer token (default $NPVDB_TOKEN; never printed)")
	n := flag.Int("n", 2000, "vectors to insert")
	dim := flag.Int("dim", 32, "dimension")
	k := flag.Int("k", 3, "neighbours per query")
	coll := flag.String("collection", "go_example", "the collection to create and drop (and NAME_payloads)")
	replace := flag.Bool("replace", false, "replace the example's collections if they exist (else stop)")
	flag.Parse()
	if *token == "" {
		*token = os.Getenv("NPVDB_TOKEN")
	}
	opts := []grpc.DialOption{npvdb.WithToken(*token)}
	if *ca != "" || *cert != "" || *key != "" {
		opts = append(opts, npvdb.WithTLS(*ca, *cert, *key))
	}
	if err := run(*addr, *n, *dim, *k, *coll, *replace, opts...); err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(1)
	}
}

// create inits the collection, replacing it only when asked: an existing
// one is an error that says how to go on, never silently replaced.
func create(ctx context.Context, c *npvdb.Collection, dim int, replace bool, o npvdb.InitOptions) (*pb.InitReply, error) {
	o.Replace = replace
	ir, err := c.Init(ctx, dim, o)
	if status.Code(err) == codes.AlreadyExists {
		return nil, fmt.Errorf("collection %q exists; run with -replace to replace it, "+
			"or -collection NAME for another name", c.Name())
	}
	if err != nil {
		return nil, fmt.Errorf("init %s: %w", c.Name(), err)
	}
	if ir.Replaced {
		fmt.Printf("%s: replaced the existing collection (-replace)\n", c.Name())
	}
	return ir, nil
}

func run(addr string, n, dim, k int, coll string, replace bool, opts ...grpc.DialOption) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := npvdb.Dial(ctx, addr, opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	c := cl.Collection(coll)

	rng := rand.New(rand.NewSource(1))
	keys := make([]string, n)
	data := make([]float32, n*dim)
	for i := range keys {
		keys[i] = fmt.Sprintf("vec%d", i)
	}
	for i := range data {
		data[i] = float32(rng.NormFloat64())
	}

	// Train on the first rows (the server picks the shard count), then
	// stream everything.
	train := data
	if n > 1000 {
		train = data[:1000*dim]
	}
	ir, err := create(ctx, c, dim, replace, npvdb.InitOptions{Metric: pb.Metric_L2, Train: train})
	if err != nil {
		return err
	}
	fmt.Printf("init %s: trained=%v\n", c.Name(), ir.Trained)
	ins, err := c.Insert(ctx, keys, data)
	if err != nil {
		return fmt.Errorf("insert: %w", err)
	}
	fmt.Printf("insert: %d new, %d replaced, %d messages\n", ins.Inserted, ins.Replaced, ins.Messages)

	// Query with the first three stored vectors: each finds itself first.
	hits, err := c.GetClosest(ctx, data[:3*dim], dim, k, 0)
	if err != nil {
		return fmt.Errorf("get_closest: %w", err)
	}
	for i, h := range hits {
		fmt.Printf("query %d:", i)
		for j := range h.Keys {
			fmt.Printf(" %s (%.4f)", h.Keys[j], h.Distances[j])
		}
		fmt.Println()
	}
	info, err := c.Info(ctx)
	if err != nil {
		return fmt.Errorf("info: %w", err)
	}
	fmt.Printf("info: %d vectors of dim %d, metric %s, %d shards, server %s\n",
		info.Vectors, info.Dim, info.Metric, info.NShards, info.ServerVersion)
	if err := withPayloads(ctx, cl.Collection(coll+"_payloads"), keys, data, dim, k, replace); err != nil {
		return err
	}
	dropped, err := c.Drop(ctx)
	if err != nil {
		return fmt.Errorf("drop: %w", err)
	}
	fmt.Printf("drop: %s held %d vectors\n", c.Name(), dropped)
	return nil
}

// withPayloads stores the vectors again in the collection docs, each with
// a payload, and searches, counts and scrolls those passing a filter.
func withPayloads(ctx context.Context, docs *npvdb.Collection, keys []string, data []float32, dim, k int, replace bool) error {
	if _, err := create(ctx, docs, dim, replace, npvdb.InitOptions{Metric: pb.Metric_L2}); err != nil {
		return err
	}
	payloads := make([]npvdb.Payload, len(keys))
	for i := range payloads {
		payloads[i] = npvdb.Payload{"tenant": i % 10, "price": float64(i % 100),
			"tags": []string{[]string{"even", "odd"}[i%2]}}
	}
	if _, err := docs.InsertWith(ctx, keys, data, npvdb.InsertOptions{Payloads: payloads}); err != nil {
		return fmt.Errorf("insert %s: %w", docs.Name(), err)
	}

	// The nearest among tenant 3's vectors under 50: vec3 is one of them.
	f := npvdb.Filter{Must: []npvdb.Condition{npvdb.Match("tenant", 3), npvdb.Range("price", npvdb.Lt(50))}}
	hits, err := docs.GetClosestWith(ctx, data[3*dim:4*dim], dim, k,
		npvdb.SearchOptions{Filter: &f, WithPayload: true})
	if err != nil {
		return fmt.Errorf("filtered get_closest: %w", err)
	}
	fmt.Printf("%s, tenant 3 and price < 50:", docs.Name())
	for j := range hits[0].Keys {
		fmt.Printf(" %s (%.4f) %v", hits[0].Keys[j], hits[0].Distances[j], hits[0].Payloads[j])
	}
	fmt.Println()
	count, err := docs.Count(ctx, &f)
	if err != nil {
		return fmt.Errorf("count: %w", err)
	}
	scrolled := 0
	s := docs.Scroll(ctx, npvdb.ScrollOptions{Filter: &f, WithPayload: true})
	for s.Next() {
		scrolled++
	}
	if err := s.Err(); err != nil {
		return fmt.Errorf("scroll: %w", err)
	}
	fmt.Printf("count: %d pass, scroll: %d\n", count, scrolled)
	dropped, err := docs.Drop(ctx)
	if err != nil {
		return fmt.Errorf("drop: %w", err)
	}
	fmt.Printf("drop: %s held %d vectors\n", docs.Name(), dropped)
	return nil
}

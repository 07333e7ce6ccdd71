// Command example inits an npvdb collection, inserts vectors, queries it
// and prints what it finds:
//
//	example -addr 127.0.0.1:50051 -n 2000 -dim 32
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"time"

	"npvdb"
	pb "npvdb/v1"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "npvdb server host:port")
	n := flag.Int("n", 2000, "vectors to insert")
	dim := flag.Int("dim", 32, "dimension")
	k := flag.Int("k", 3, "neighbours per query")
	flag.Parse()
	if err := run(*addr, *n, *dim, *k); err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(1)
	}
}

func run(addr string, n, dim, k int) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := npvdb.Dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()

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
	ir, err := c.Init(ctx, dim, npvdb.InitOptions{Metric: pb.Metric_L2, Replace: true, Train: train})
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	fmt.Printf("init: trained=%v replaced=%v\n", ir.Trained, ir.Replaced)
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
	return nil
}

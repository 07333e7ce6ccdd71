package npvdb

// Tests against a real npvdb-server ($NPVDB_SERVER, set by CTest), started
// on a free loopback port with its own data directory and stopped with
// SIGTERM at the end; a server that does not exit 0 fails the run. Without
// $NPVDB_SERVER only the layout tests run.

import (
	"bytes"
	"context"
	"fmt"
	"io/ioutil"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "npvdb/v1"
)

var serverAddr string // empty: no server, the server tests skip

func TestMain(m *testing.M) {
	bin := os.Getenv("NPVDB_SERVER")
	if bin == "" {
		os.Exit(m.Run())
	}
	dir, err := ioutil.TempDir("", "npvdb-go-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	cmd, log, err := startServer(bin, dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		err = fmt.Errorf("no exit 30 s after SIGTERM")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "npvdb-server: %v\n%s", err, log.String())
		code = 1
	}
	os.Exit(code)
}

// startServer runs bin on 127.0.0.1:0 and waits for its port file.
func startServer(bin, dir string) (*exec.Cmd, *bytes.Buffer, error) {
	portFile := filepath.Join(dir, "port")
	log := &bytes.Buffer{}
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--port-file", portFile,
		"--data-dir", filepath.Join(dir, "data"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		b, err := ioutil.ReadFile(portFile)
		if err == nil {
			if port, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && port > 0 {
				serverAddr = fmt.Sprintf("127.0.0.1:%d", port)
				return cmd, log, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	return nil, nil, fmt.Errorf("npvdb-server wrote no port file:\n%s", log.String())
}

func dial(t *testing.T) (*Client, context.Context) {
	t.Helper()
	if serverAddr == "" {
		t.Skip("no npvdb-server: set NPVDB_SERVER")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	c, err := Dial(ctx, serverAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, ctx
}

func randomRows(n, dim int, seed int64) []float32 {
	rng := rand.New(rand.NewSource(seed))
	v := make([]float32, n*dim)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func keysN(n int) []string {
	k := make([]string, n)
	for i := range k {
		k[i] = fmt.Sprintf("k%d", i)
	}
	return k
}

// bruteL2 returns the indices of the k nearest rows of data to q.
func bruteL2(data, q []float32, dim, k int) []int {
	n := len(data) / dim
	d := make([]float64, n)
	idx := make([]int, n)
	for i := 0; i < n; i++ {
		var s float64
		for j := 0; j < dim; j++ {
			x := float64(data[i*dim+j]) - float64(q[j])
			s += x * x
		}
		d[i], idx[i] = s, i
	}
	sort.Slice(idx, func(a, b int) bool { return d[idx[a]] < d[idx[b]] })
	return idx[:k]
}

func TestBytesLayout(t *testing.T) {
	b := Bytes([]float32{1, -2.5})
	want := []byte{0, 0, 0x80, 0x3f, 0, 0, 0x20, 0xc0} // little-endian IEEE-754
	if !bytes.Equal(b, want) {
		t.Fatalf("Bytes = %x, want %x", b, want)
	}
	v, err := Floats(b)
	if err != nil || len(v) != 2 || v[0] != 1 || v[1] != -2.5 {
		t.Fatalf("Floats = %v, %v", v, err)
	}
	if _, err := Floats(b[:3]); err == nil {
		t.Fatal("Floats of 3 bytes: no error")
	}
}

func TestRoundTrip(t *testing.T) {
	c, ctx := dial(t)
	const n, dim, shards, k = 10000, 128, 8, 10
	data := randomRows(n, dim, 1)
	keys := keysN(n)
	ir, err := c.Init(ctx, dim, InitOptions{Metric: pb.Metric_L2, NShards: shards,
		Replace: true, Train: data[:2000*dim]})
	if err != nil || !ir.Trained {
		t.Fatalf("Init: %v %v", ir, err)
	}
	ins, err := c.Insert(ctx, keys, data) // 5.2 MB: two messages
	if err != nil {
		t.Fatal("Insert:", err)
	}
	if ins.Inserted != n || ins.Replaced != 0 || ins.Messages != 2 {
		t.Fatalf("Insert = %v", ins)
	}

	queries := randomRows(5, dim, 2)
	hits, err := c.GetClosest(ctx, queries, dim, k, shards) // all shards: exact
	if err != nil {
		t.Fatal("GetClosest:", err)
	}
	for i, h := range hits {
		want := bruteL2(data, queries[i*dim:(i+1)*dim], dim, k)
		if len(h.Keys) != k {
			t.Fatalf("query %d: %d hits", i, len(h.Keys))
		}
		for j, w := range want {
			if h.Keys[j] != keys[w] {
				t.Errorf("query %d hit %d: %s, want %s", i, j, h.Keys[j], keys[w])
			}
			if j > 0 && h.Distances[j] < h.Distances[j-1] {
				t.Errorf("query %d: distances not ascending %v", i, h.Distances)
			}
		}
	}

	found, vecs, missing, err := c.Get(ctx, []string{"k7", "nope", "k0"})
	if err != nil {
		t.Fatal("Get:", err)
	}
	if strings.Join(found, ",") != "k7,k0" || strings.Join(missing, ",") != "nope" {
		t.Fatalf("Get found %v missing %v", found, missing)
	}
	for j := 0; j < dim; j++ {
		if vecs[j] != data[7*dim+j] || vecs[dim+j] != data[j] {
			t.Fatalf("Get: stored vector differs at %d", j)
		}
	}

	del, err := c.Delete(ctx, []string{"k0", "k1", "nope"})
	if err != nil || del != 2 {
		t.Fatalf("Delete = %d, %v", del, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal("Info:", err)
	}
	if !info.Initialized || info.Vectors != n-2 || info.Dim != dim ||
		info.Metric != pb.Metric_L2 || info.NShards != shards {
		t.Fatalf("Info = %v", info)
	}
	snap, err := c.Snapshot(ctx)
	if err != nil || snap.Vectors != n-2 || snap.Bytes == 0 {
		t.Fatalf("Snapshot = %v, %v", snap, err)
	}
}

func TestErrors(t *testing.T) {
	c, ctx := dial(t)
	dim := 4
	if _, err := c.Init(ctx, dim, InitOptions{Replace: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Insert(ctx, keysN(20), randomRows(20, dim, 3)); err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error, want codes.Code) {
		t.Helper()
		if status.Code(err) != want || status.Convert(err).Message() == "" {
			t.Errorf("%s: got %v, want %v with a message", what, err, want)
		}
	}
	_, err := c.Init(ctx, dim, InitOptions{})
	check("Init twice", err, codes.AlreadyExists)
	_, err = c.GetClosest(ctx, make([]float32, dim), dim, 0, 0)
	check("k=0", err, codes.InvalidArgument)
	nan := randomRows(1, dim, 4)
	nan[2] = float32(math.NaN())
	_, err = c.Insert(ctx, []string{"nan"}, nan)
	check("NaN", err, codes.InvalidArgument)
	_, err = c.Insert(ctx, []string{"wide"}, make([]float32, dim+1))
	check("wrong dim", err, codes.InvalidArgument)
}

// TestExample runs the example program ($NPVDB_GO_EXAMPLE) against the server.
func TestExample(t *testing.T) {
	bin := os.Getenv("NPVDB_GO_EXAMPLE")
	if bin == "" || serverAddr == "" {
		t.Skip("set NPVDB_GO_EXAMPLE and NPVDB_SERVER")
	}
	out, err := exec.Command(bin, "-addr", serverAddr, "-n", "3000").CombinedOutput()
	if err != nil {
		t.Fatalf("example: %v\n%s", err, out)
	}
	for _, want := range []string{"insert: 3000 new", "query 0: vec0 (0.0000)",
		"query 2: vec2 (0.0000)", "info: 3000 vectors of dim 32, metric L2"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("example output lacks %q:\n%s", want, out)
		}
	}
}

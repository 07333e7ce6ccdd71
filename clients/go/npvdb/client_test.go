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
	"reflect"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang/protobuf/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "npvdb/v1"
)

// exactNprobe probes every shard however many splits made: an exact search.
const exactNprobe = 1 << 16

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

// startServer runs bin on 127.0.0.1:0 and waits for its port file; it
// sets serverAddr.
func startServer(bin, dir string) (*exec.Cmd, *bytes.Buffer, error) {
	cmd, log, addr, err := runServer(bin, dir)
	serverAddr = addr
	return cmd, log, err
}

// runServer runs bin on 127.0.0.1:0 with a data directory under dir and the
// extra flags, and returns its address once it wrote its port file.
func runServer(bin, dir string, extra ...string) (*exec.Cmd, *bytes.Buffer, string, error) {
	portFile := filepath.Join(dir, "port")
	log := &bytes.Buffer{}
	args := append([]string{"--listen", "127.0.0.1:0", "--port-file", portFile,
		"--data-dir", filepath.Join(dir, "data")}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, nil, "", err
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		b, err := ioutil.ReadFile(portFile)
		if err == nil {
			if port, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && port > 0 {
				return cmd, log, fmt.Sprintf("127.0.0.1:%d", port), nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	return nil, nil, "", fmt.Errorf("npvdb-server wrote no port file:\n%s", log.String())
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
	// nprobe past the shard count (splits add to the 8 trained): exact
	hits, err := c.GetClosest(ctx, queries, dim, k, exactNprobe)
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
		info.Metric != pb.Metric_L2 || info.NShards < shards ||
		len(info.ShardSizes) != int(info.NShards) {
		// Trained with 8; the inserts split some.
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
	want := []string{"init go_example: trained=true", "insert: 3000 new", "query 0: vec0 (0.0000)",
		"query 2: vec2 (0.0000)", "info: 3000 vectors of dim 32, metric L2",
		"go_example_payloads, tenant 3 and price < 50: vec3 (0.0000) map[price:3 tags:[odd] tenant:3]",
		"count: 150 pass, scroll: 150", "drop: go_example_payloads held 3000 vectors",
		"drop: go_example held 3000 vectors"}
	// Twice: it drops what it made, so a second run finds nothing in its way.
	for run := 0; run < 2; run++ {
		out, err := exec.Command(bin, "-addr", serverAddr, "-n", "3000").CombinedOutput()
		if err != nil {
			t.Fatalf("example (run %d): %v\n%s", run, err, out)
		}
		for _, w := range want {
			if !strings.Contains(string(out), w) {
				t.Errorf("example output (run %d) lacks %q:\n%s", run, w, out)
			}
		}
	}
}

// TestExampleKeepsAnExistingCollection: the example never replaces a
// collection without -replace; it stops and says how to go on.
func TestExampleKeepsAnExistingCollection(t *testing.T) {
	bin := os.Getenv("NPVDB_GO_EXAMPLE")
	if bin == "" || serverAddr == "" {
		t.Skip("set NPVDB_GO_EXAMPLE and NPVDB_SERVER")
	}
	c, ctx := dial(t)
	const name = "go_example_taken"
	dropAfter(t, c, name)
	mine := c.Collection(name)
	if _, err := mine.Init(ctx, 2, InitOptions{Metric: pb.Metric_L2}); err != nil {
		t.Fatal(err)
	}
	if _, err := mine.Insert(ctx, []string{"precious"}, []float32{1, 2}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-addr", serverAddr, "-n", "300", "-collection", name).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `collection "go_example_taken" exists; run with -replace`) {
		t.Fatalf("example on an existing collection: err %v\n%s", err, out)
	}
	info, err := mine.Info(ctx)
	if err != nil || info.Vectors != 1 || info.Dim != 2 {
		t.Fatalf("the existing collection changed: %v %v", info, err)
	}
	out, err = exec.Command(bin, "-addr", serverAddr, "-n", "300", "-collection", name, "-replace").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "go_example_taken: replaced the existing collection (-replace)") {
		t.Fatalf("example -replace: err %v\n%s", err, out)
	}
}

// ---- collections, payloads, filters, Count and Scroll ----

// dropAfter drops the collection name when the test ends, so that the
// snapshot counts of other tests see only theirs.
func dropAfter(t *testing.T, c *Client, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := c.DropCollection(ctx, name); err != nil && status.Code(err) != codes.NotFound {
			t.Errorf("drop %s: %v", name, err)
		}
	})
}

// wantCode fails unless err is a status error of code want whose message
// holds every one of parts.
func wantCode(t *testing.T, what string, err error, want codes.Code, parts ...string) {
	t.Helper()
	if status.Code(err) != want {
		t.Errorf("%s: got %v, want %v", what, err, want)
		return
	}
	msg := status.Convert(err).Message()
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("%s: message %q lacks %q", what, msg, p)
		}
	}
}

func TestCollections(t *testing.T) {
	c, ctx := dial(t)
	a, b := c.Collection("go_a"), c.Collection("go_b")
	dropAfter(t, c, "go_a")
	dropAfter(t, c, "go_b")
	if a.Name() != "go_a" || c.Collection("").Name() != "default" ||
		c.Collection("default").Name() != "default" {
		t.Fatal("Name")
	}
	dataA, dataB := randomRows(30, 4, 11), randomRows(50, 8, 12)
	if _, err := a.Init(ctx, 4, InitOptions{Metric: pb.Metric_L2, Replace: true}); err != nil {
		t.Fatal("Init a:", err)
	}
	if _, err := b.Init(ctx, 8, InitOptions{Metric: pb.Metric_L2, Replace: true}); err != nil {
		t.Fatal("Init b:", err)
	}
	_, err := a.Init(ctx, 4, InitOptions{})
	wantCode(t, "Init a twice", err, codes.AlreadyExists)
	if _, err := a.Insert(ctx, keysN(30), dataA); err != nil {
		t.Fatal("Insert a:", err)
	}
	if _, err := b.Insert(ctx, keysN(50), dataB); err != nil {
		t.Fatal("Insert b:", err)
	}

	// The same key in both holds each collection's own vector.
	for _, x := range []struct {
		h    *Collection
		data []float32
		dim  int
	}{{a, dataA, 4}, {b, dataB, 8}} {
		found, vecs, _, err := x.h.Get(ctx, []string{"k3"})
		if err != nil || len(found) != 1 || len(vecs) != x.dim {
			t.Fatalf("Get %s: %v %d floats, %v", x.h.Name(), found, len(vecs), err)
		}
		for j := range vecs {
			if vecs[j] != x.data[3*x.dim+j] {
				t.Fatalf("Get %s: k3 differs at %d", x.h.Name(), j)
			}
		}
		hits, err := x.h.GetClosest(ctx, x.data[3*x.dim:4*x.dim], x.dim, 1, 0)
		if err != nil || hits[0].Keys[0] != "k3" {
			t.Fatalf("GetClosest %s: %v %v", x.h.Name(), hits, err)
		}
	}
	info, err := a.Info(ctx)
	if err != nil || info.Collection != "go_a" || info.Dim != 4 || info.Vectors != 30 {
		t.Fatalf("Info a = %v, %v", info, err)
	}

	list, err := c.ListCollections(ctx)
	if err != nil {
		t.Fatal("ListCollections:", err)
	}
	byName := map[string]*pb.CollectionInfo{}
	for i, ci := range list {
		if i > 0 && list[i-1].Name >= ci.Name {
			t.Errorf("ListCollections not sorted: %q before %q", list[i-1].Name, ci.Name)
		}
		byName[ci.Name] = ci
	}
	if ci := byName["go_a"]; ci == nil || ci.Dim != 4 || ci.Vectors != 30 || ci.Metric != pb.Metric_L2 {
		t.Errorf("ListCollections go_a = %v", ci)
	}
	if ci := byName["go_b"]; ci == nil || ci.Dim != 8 || ci.Vectors != 50 {
		t.Errorf("ListCollections go_b = %v", ci)
	}

	n, err := c.DropCollection(ctx, "go_b")
	if err != nil || n != 50 {
		t.Fatalf("DropCollection go_b = %d, %v", n, err)
	}
	list, err = c.ListCollections(ctx)
	if err != nil {
		t.Fatal("ListCollections:", err)
	}
	for _, ci := range list {
		if ci.Name == "go_b" {
			t.Error("go_b listed after its drop")
		}
	}

	// A missing collection is NotFound, with its name, in every call.
	_, err = b.GetClosest(ctx, dataB[:8], 8, 1, 0)
	wantCode(t, "GetClosest on dropped", err, codes.NotFound, "go_b")
	_, err = b.Insert(ctx, []string{"x"}, dataB[:8])
	wantCode(t, "Insert on dropped", err, codes.NotFound, "go_b")
	_, _, _, err = b.Get(ctx, []string{"k1"})
	wantCode(t, "Get on dropped", err, codes.NotFound, "go_b")
	_, err = b.Delete(ctx, []string{"k1"})
	wantCode(t, "Delete on dropped", err, codes.NotFound, "go_b")
	_, err = b.Count(ctx, nil)
	wantCode(t, "Count on dropped", err, codes.NotFound, "go_b")
	_, err = b.Search(ctx, dataB[:8], 8, 1, SearchOptions{})
	wantCode(t, "Search on dropped", err, codes.NotFound, "go_b")
	_, err = b.Snapshot(ctx)
	wantCode(t, "Snapshot of dropped", err, codes.NotFound, "go_b")
	s := b.Scroll(ctx, ScrollOptions{})
	if s.Next() {
		t.Error("Scroll on dropped: a point")
	}
	wantCode(t, "Scroll on dropped", s.Err(), codes.NotFound, "go_b")
	// Info is the exception: it describes what is not there.
	if info, err := b.Info(ctx); err != nil || info.Initialized {
		t.Errorf("Info on dropped = %v, %v; want initialized false", info, err)
	}
	_, err = b.Drop(ctx)
	wantCode(t, "Drop twice", err, codes.NotFound, "go_b")
	_, err = c.DropCollection(ctx, "go_never")
	wantCode(t, "DropCollection missing", err, codes.NotFound, "go_never")
	_, err = c.Collection("a/b").Init(ctx, 4, InitOptions{})
	wantCode(t, "bad name", err, codes.InvalidArgument, "a/b")
}

// payloadOf is the payload the filter tests give vector i, with Go types
// as they come back (int64, float64, []string); some vectors have no lang,
// vectors with i%17 == 0 no payload at all.
func payloadOf(i int) Payload {
	if i%17 == 0 {
		return nil
	}
	p := Payload{
		"tenant": int64(i % 7),
		"price":  float64(i%100) + 0.5,
		"tags":   []string{fmt.Sprintf("t%d", i%5)},
		"even":   i%2 == 0,
	}
	if i%11 != 0 {
		p["lang"] = []string{"de", "en", "fr"}[i%3]
	}
	if i%13 == 0 {
		p["tags"] = append(p["tags"].([]string), "spam")
	}
	return p
}

// asStored is what Get returns for payload p: {} for none.
func asStored(p Payload) Payload {
	if p == nil {
		return Payload{}
	}
	return p
}

func TestPayloadRoundTrip(t *testing.T) {
	c, ctx := dial(t)
	h := c.Collection("go_payloads")
	dropAfter(t, c, "go_payloads")
	if _, err := h.Init(ctx, 4, InitOptions{Metric: pb.Metric_L2, Replace: true}); err != nil {
		t.Fatal(err)
	}
	data := randomRows(3, 4, 21)
	in := []Payload{
		{"s": "héllo", "i": 42, "big": int64(-1 << 62), "f": 2.5, "b": true,
			"tags": []string{"a", "b"}, "none": []string{}},
		nil,
		{"u8": uint8(7), "f32": float32(0.5), "json": []any{"x", "y"}, "neg": int32(-3)},
	}
	want := []Payload{
		{"s": "héllo", "i": int64(42), "big": int64(-1 << 62), "f": 2.5, "b": true,
			"tags": []string{"a", "b"}, "none": []string{}},
		{},
		{"u8": int64(7), "f32": 0.5, "json": []string{"x", "y"}, "neg": int64(-3)},
	}
	ins, err := h.InsertWith(ctx, keysN(3), data, InsertOptions{Payloads: in})
	if err != nil || ins.Inserted != 3 {
		t.Fatalf("InsertWith = %v, %v", ins, err)
	}
	r, err := h.GetWith(ctx, []string{"k2", "nope", "k0", "k1"}, GetOptions{WithPayload: true})
	if err != nil {
		t.Fatal("GetWith:", err)
	}
	if strings.Join(r.Keys, ",") != "k2,k0,k1" || strings.Join(r.Missing, ",") != "nope" ||
		len(r.Vectors) != 12 || len(r.Payloads) != 3 {
		t.Fatalf("GetWith = %+v", r)
	}
	for j, i := range []int{2, 0, 1} {
		if !reflect.DeepEqual(r.Payloads[j], want[i]) {
			t.Errorf("payload of k%d = %#v, want %#v", i, r.Payloads[j], want[i])
		}
	}
	if r, err := h.GetWith(ctx, []string{"k0"}, GetOptions{}); err != nil || r.Payloads != nil {
		t.Errorf("GetWith without payloads = %+v, %v", r, err)
	}

	// An upsert replaces the payload with the vector: none given, none kept.
	if _, err := h.Insert(ctx, []string{"k0"}, data[:4]); err != nil {
		t.Fatal(err)
	}
	if _, err := h.InsertWith(ctx, []string{"k1"}, data[4:8], InsertOptions{
		Payloads: []Payload{{"now": "set"}}}); err != nil {
		t.Fatal(err)
	}
	r, err = h.GetWith(ctx, []string{"k0", "k1"}, GetOptions{WithPayload: true})
	if err != nil || !reflect.DeepEqual(r.Payloads, []Payload{{}, {"now": "set"}}) {
		t.Fatalf("after upserts: %+v, %v", r, err)
	}
}

func TestBadPayload(t *testing.T) {
	c, ctx := dial(t)
	h := c.Collection("go_bad_payload")
	dropAfter(t, c, "go_bad_payload")
	if _, err := h.Init(ctx, 2, InitOptions{Replace: true}); err != nil {
		t.Fatal(err)
	}
	keys, data := keysN(3), randomRows(3, 2, 31)
	long := strings.Repeat("x", MaxStringBytes+1)
	for _, x := range []struct {
		value any
		parts []string
	}{
		{map[string]int{}, []string{`payloads[1]["x"]`, "map[string]int is not a payload type"}},
		{[]int{1, 2}, []string{`payloads[1]["x"]`, "[]int is not a payload type"}},
		{struct{}{}, []string{`payloads[1]["x"]`, "struct {} is not a payload type"}},
		{nil, []string{`payloads[1]["x"]`, "<nil> is not a payload type"}},
		{[]any{"a", 3}, []string{`payloads[1]["x"][1]`, "a list holds only strings, got int"}},
		{math.NaN(), []string{`payloads[1]["x"]`, "NaN is not finite"}},
		{uint64(1 << 63), []string{`payloads[1]["x"]`, "does not fit int64"}},
		{long, []string{`payloads[1]["x"]`, "65536 bytes, at most 65535"}},
		{"\xff", []string{`payloads[1]["x"]`, "not valid UTF-8"}},
		{[]string{"ok", long}, []string{`payloads[1]["x"][1]`, "at most 65535"}},
	} {
		_, err := h.InsertWith(ctx, keys, data, InsertOptions{
			Payloads: []Payload{{"ok": 1}, {"fine": "yes", "x": x.value}, nil}})
		wantCode(t, fmt.Sprintf("payload value %T", x.value), err, codes.InvalidArgument, x.parts...)
	}
	_, err := h.InsertWith(ctx, keys, data, InsertOptions{Payloads: []Payload{nil, nil, {"": 1}}})
	wantCode(t, "empty field name", err, codes.InvalidArgument, `payloads[2][""]`, "empty field name")
	_, err = h.InsertWith(ctx, keys, data, InsertOptions{Payloads: []Payload{nil, nil}})
	wantCode(t, "2 payloads", err, codes.InvalidArgument, "2 payloads for 3 keys")
	many := Payload{}
	for i := 0; i <= MaxFields; i++ {
		many[fmt.Sprintf("f%d", i)] = i
	}
	_, err = h.InsertWith(ctx, keys, data, InsertOptions{Payloads: []Payload{nil, nil, many}})
	wantCode(t, "65 fields", err, codes.InvalidArgument, "payloads[2]", "65 fields, at most 64")
	if n, err := h.Count(ctx, nil); err != nil || n != 0 {
		t.Fatalf("after bad payloads: %d vectors, %v (want nothing sent)", n, err)
	}

	// Past the client's checks, the server's: 1 MiB at most for one payload.
	huge := Payload{}
	for i := 0; i < 20; i++ {
		huge[fmt.Sprintf("f%d", i)] = strings.Repeat("y", MaxStringBytes)
	}
	_, err = h.InsertWith(ctx, keys, data, InsertOptions{Payloads: []Payload{nil, huge, nil}})
	wantCode(t, "payload over 1 MiB", err, codes.InvalidArgument, "payloads[1]")
}

func TestFilterProto(t *testing.T) {
	f := Filter{
		Must: []Condition{
			Range("price", Gt(5), Gte(5), Lte(9), Lt(9)),
			Range("tenant", Gt(3), Gte(5), Lt(100), Lte(10)),
			MatchAny("tenant", []int{1, 2}),
			MatchAny("tag", []any{"a", "b"}),
			Match("lang", "en"),
			Match("n", uint8(3)),
			Match("even", false),
		},
		Should:  []Condition{HasField("lang"), &Filter{MustNot: []Condition{Match("x", 1)}}},
		MustNot: []Condition{Filter{}},
	}
	m, err := f.Proto()
	if err != nil {
		t.Fatal(err)
	}
	want := &pb.Filter{
		Must: []*pb.Condition{
			{Key: "price", Condition: &pb.Condition_Range{Range: &pb.Range{
				Lower: &pb.Range_Gt{Gt: 5}, Upper: &pb.Range_Lt{Lt: 9}}}},
			{Key: "tenant", Condition: &pb.Condition_Range{Range: &pb.Range{
				Lower: &pb.Range_Gte{Gte: 5}, Upper: &pb.Range_Lte{Lte: 10}}}},
			{Key: "tenant", Condition: &pb.Condition_Match{Match: &pb.Match{
				Kind: &pb.Match_Integers{Integers: &pb.IntList{Values: []int64{1, 2}}}}}},
			{Key: "tag", Condition: &pb.Condition_Match{Match: &pb.Match{
				Kind: &pb.Match_Keywords{Keywords: &pb.StringList{Values: []string{"a", "b"}}}}}},
			{Key: "lang", Condition: &pb.Condition_Match{Match: &pb.Match{
				Kind: &pb.Match_Keyword{Keyword: "en"}}}},
			{Key: "n", Condition: &pb.Condition_Match{Match: &pb.Match{
				Kind: &pb.Match_Integer{Integer: 3}}}},
			{Key: "even", Condition: &pb.Condition_Match{Match: &pb.Match{
				Kind: &pb.Match_Boolean{Boolean: false}}}},
		},
		Should: []*pb.Condition{
			{Condition: &pb.Condition_HasField{HasField: "lang"}},
			{Condition: &pb.Condition_Filter{Filter: &pb.Filter{MustNot: []*pb.Condition{
				{Key: "x", Condition: &pb.Condition_Match{Match: &pb.Match{
					Kind: &pb.Match_Integer{Integer: 1}}}}}}}},
		},
		MustNot: []*pb.Condition{{Condition: &pb.Condition_Filter{Filter: &pb.Filter{}}}},
	}
	if !proto.Equal(m, want) {
		t.Fatalf("Proto =\n%v\nwant\n%v", m, want)
	}

	var nilFilter *Filter
	for _, x := range []struct {
		f     Filter
		parts []string
	}{
		{Filter{Must: []Condition{Match("price", 2.5)}}, []string{"filter.must[0].match.value",
			"Range for floats), got float64"}},
		{Filter{Should: []Condition{HasField("a"), MatchAny("t", []any{"a", 1})}},
			[]string{"filter.should[1].match.any", "all strings or all ints, got [int string]"}},
		{Filter{Must: []Condition{Filter{MustNot: []Condition{Range("p")}}}},
			[]string{"filter.must[0].must_not[0].range", "no bound"}},
		{Filter{Must: []Condition{Range("p", Gte(math.Inf(1)))}}, []string{"filter.must[0].range.gte", "+Inf is not finite"}},
		{Filter{Must: []Condition{Range("p", Bound{})}}, []string{"filter.must[0].range", "bound 0 is not"}},
		{Filter{Must: []Condition{nil}}, []string{"filter.must[0]", "nil condition"}},
		{Filter{Must: []Condition{nilFilter}}, []string{"filter.must[0]", "nil condition"}},
		{Filter{MustNot: []Condition{HasField("")}}, []string{"filter.must_not[0].has_field", "non-empty"}},
		{Filter{Must: []Condition{Match("", 1)}}, []string{"filter.must[0].key", "non-empty"}},
		{Filter{Must: []Condition{MatchAny("t", []string{})}}, []string{"filter.must[0].match.any", "non-empty"}},
		{Filter{Must: []Condition{MatchAny("t", "a")}}, []string{"filter.must[0].match.any", "got string"}},
		{Filter{Must: []Condition{Match("t", uint64(math.MaxUint64))}}, []string{"filter.must[0].match.value", "does not fit int64"}},
		{Filter{Must: []Condition{Match("t", []string{"a"})}}, []string{"filter.must[0].match.value", "MatchAny for several"}},
	} {
		_, err := x.f.Proto()
		wantCode(t, x.parts[0], err, codes.InvalidArgument, x.parts...)
	}
}

// bruteL2Among is bruteL2 restricted to the rows in idx.
func bruteL2Among(data, q []float32, dim, k int, idx []int) []int {
	sub := make([]float32, 0, len(idx)*dim)
	for _, i := range idx {
		sub = append(sub, data[i*dim:(i+1)*dim]...)
	}
	if k > len(idx) {
		k = len(idx)
	}
	near := bruteL2(sub, q, dim, k)
	for j := range near {
		near[j] = idx[near[j]]
	}
	return near
}

func TestFilteredSearch(t *testing.T) {
	c, ctx := dial(t)
	h := c.Collection("go_filtered")
	dropAfter(t, c, "go_filtered")
	const n, dim, shards, k = 3000, 16, 4, 10
	data := randomRows(n, dim, 41)
	keys := keysN(n)
	payloads := make([]Payload, n)
	for i := range payloads {
		payloads[i] = payloadOf(i)
	}
	if _, err := h.Init(ctx, dim, InitOptions{Metric: pb.Metric_L2, NShards: shards,
		Replace: true, Train: data}); err != nil {
		t.Fatal("Init:", err)
	}
	if _, err := h.InsertWith(ctx, keys, data, InsertOptions{Payloads: payloads}); err != nil {
		t.Fatal("InsertWith:", err)
	}
	queries := randomRows(4, dim, 42)

	// Each filter with the same test written by hand over the generator's
	// arithmetic (not over the payloads), for brute force.
	for _, x := range []struct {
		name string
		f    Filter
		pass func(i int) bool
	}{
		{"tenant 1..3, price [10, 60), no spam, en or even",
			Filter{
				Must:    []Condition{MatchAny("tenant", []int{1, 2, 3}), Range("price", Gte(10), Lt(60))},
				MustNot: []Condition{Match("tags", "spam")},
				Should: []Condition{Match("lang", "en"),
					Filter{Must: []Condition{HasField("even"), Match("even", true)}}},
			},
			func(i int) bool {
				p := float64(i%100) + 0.5
				return i%17 != 0 && i%7 >= 1 && i%7 <= 3 && p >= 10 && p < 60 && i%13 != 0 &&
					(i%11 != 0 && i%3 == 1 || i%2 == 0)
			}},
		{"selective: tenant 5, fr, price < 3 (fewer than k)",
			Filter{Must: []Condition{Match("tenant", 5), Match("lang", "fr"), Range("price", Lt(3))}},
			func(i int) bool { return i%17 != 0 && i%7 == 5 && i%11 != 0 && i%3 == 2 && i%100 < 3 }},
		{"int range, list field any, no lang",
			Filter{Must: []Condition{Range("tenant", Gt(4)), MatchAny("tags", []string{"t0", "t3"})},
				MustNot: []Condition{HasField("lang")}},
			func(i int) bool { return i%17 != 0 && i%7 > 4 && (i%5 == 0 || i%5 == 3) && i%11 == 0 }},
		{"a field nobody has", Filter{Must: []Condition{Match("nofield", "x")}},
			func(i int) bool { return false }},
		{"wrong type: an int match on a float field", Filter{Must: []Condition{Match("price", 10)}},
			func(i int) bool { return false }},
		{"empty filter", Filter{}, func(i int) bool { return true }},
	} {
		f := x.f
		var idx []int
		for i := 0; i < n; i++ {
			if x.pass(i) {
				idx = append(idx, i)
			}
		}
		if cnt, err := h.Count(ctx, &f); err != nil || cnt != uint64(len(idx)) {
			t.Errorf("%s: Count = %d, %v, want %d", x.name, cnt, err, len(idx))
		}
		o := SearchOptions{Nprobe: exactNprobe, Filter: &f, WithPayload: true}
		streamed, err := h.GetClosestWith(ctx, queries, dim, k, o)
		if err != nil {
			t.Fatalf("%s: GetClosestWith: %v", x.name, err)
		}
		packed, err := h.Search(ctx, queries, dim, k, o)
		if err != nil {
			t.Fatalf("%s: Search: %v", x.name, err)
		}
		for qi := range streamed {
			want := bruteL2Among(data, queries[qi*dim:(qi+1)*dim], dim, k, idx)
			for _, got := range []Hits{streamed[qi], packed[qi]} {
				if len(got.Keys) != len(want) || len(got.Distances) != len(want) ||
					len(got.Payloads) != len(want) {
					t.Fatalf("%s: query %d: %d keys, %d distances, %d payloads, want %d",
						x.name, qi, len(got.Keys), len(got.Distances), len(got.Payloads), len(want))
				}
				for j, w := range want {
					if got.Keys[j] != keys[w] {
						t.Errorf("%s: query %d hit %d: %s, want %s", x.name, qi, j, got.Keys[j], keys[w])
					}
					if !reflect.DeepEqual(got.Payloads[j], asStored(payloads[w])) {
						t.Errorf("%s: query %d hit %d: payload %v, want %v", x.name, qi, j,
							got.Payloads[j], payloads[w])
					}
				}
			}
		}
	}

	// Without WithPayload no payloads; the plain GetClosest is unfiltered.
	hits, err := h.GetClosestWith(ctx, queries, dim, k, SearchOptions{Nprobe: exactNprobe})
	if err != nil || hits[0].Payloads != nil || len(hits[0].Keys) != k {
		t.Fatalf("GetClosestWith without payloads: %v, %v", hits[0], err)
	}
	if cnt, err := h.Count(ctx, nil); err != nil || cnt != n {
		t.Fatalf("Count(nil) = %d, %v", cnt, err)
	}
	bad := Filter{Must: []Condition{Match("price", 2.5)}}
	_, err = h.GetClosestWith(ctx, queries, dim, k, SearchOptions{Filter: &bad})
	wantCode(t, "float match", err, codes.InvalidArgument, "filter.must[0].match.value")
	_, err = h.Count(ctx, &bad)
	wantCode(t, "Count float match", err, codes.InvalidArgument, "filter.must[0].match.value")
}

func TestScroll(t *testing.T) {
	c, ctx := dial(t)
	h := c.Collection("go_scroll")
	dropAfter(t, c, "go_scroll")
	const n, dim = 1000, 8
	data := randomRows(n, dim, 51)
	keys := keysN(n)
	payloads := make([]Payload, n)
	index := map[string]int{}
	for i := range payloads {
		payloads[i] = payloadOf(i)
		index[keys[i]] = i
	}
	if _, err := h.Init(ctx, dim, InitOptions{Metric: pb.Metric_L2, Replace: true}); err != nil {
		t.Fatal(err)
	}
	s := h.Scroll(ctx, ScrollOptions{})
	if s.Next() || s.Err() != nil {
		t.Fatalf("Scroll of an empty collection: %v", s.Err())
	}
	if _, err := h.InsertWith(ctx, keys, data, InsertOptions{Payloads: payloads}); err != nil {
		t.Fatal(err)
	}

	// visit scrolls and checks every point; it returns how often each
	// index came.
	visit := func(o ScrollOptions) map[int]int {
		t.Helper()
		seen := map[int]int{}
		s := h.Scroll(ctx, o)
		for s.Next() {
			p := s.Point()
			i, ok := index[p.Key]
			if !ok {
				t.Fatalf("Scroll: unknown key %q", p.Key)
			}
			seen[i]++
			if o.WithVectors != (p.Vector != nil) || o.WithPayload != (p.Payload != nil) {
				t.Fatalf("Scroll %+v: point %+v", o, p)
			}
			if o.WithVectors && !reflect.DeepEqual(p.Vector, data[i*dim:(i+1)*dim]) {
				t.Errorf("Scroll: vector of %s differs", p.Key)
			}
			if o.WithPayload && !reflect.DeepEqual(p.Payload, asStored(payloads[i])) {
				t.Errorf("Scroll: payload of %s = %v, want %v", p.Key, p.Payload, payloads[i])
			}
		}
		if err := s.Err(); err != nil {
			t.Fatalf("Scroll %+v: %v", o, err)
		}
		return seen
	}
	exactlyOnce := func(what string, seen map[int]int, pass func(int) bool) {
		t.Helper()
		for i := 0; i < n; i++ {
			if want := map[bool]int{true: 1}[pass(i)]; seen[i] != want {
				t.Errorf("%s: %s visited %d times, want %d", what, keys[i], seen[i], want)
			}
		}
	}
	all := func(int) bool { return true }
	exactlyOnce("all, pages of 97", visit(ScrollOptions{WithVectors: true, WithPayload: true, BatchSize: 97}), all)
	exactlyOnce("all, default pages", visit(ScrollOptions{}), all)
	exactlyOnce("all, one page", visit(ScrollOptions{WithPayload: true, BatchSize: MaxScrollBatch}), all)

	f := Filter{Must: []Condition{MatchAny("tenant", []int{0, 3})},
		MustNot: []Condition{Match("lang", "de")}}
	pass := func(i int) bool {
		return i%17 != 0 && (i%7 == 0 || i%7 == 3) && (i%11 == 0 || i%3 != 0)
	}
	exactlyOnce("filtered, pages of 10", visit(ScrollOptions{Filter: &f, WithPayload: true, BatchSize: 10}), pass)
	exactlyOnce("filtered, vectors only", visit(ScrollOptions{Filter: &f, WithVectors: true}), pass)
	none := Filter{Must: []Condition{HasField("nofield")}}
	exactlyOnce("nothing passes", visit(ScrollOptions{Filter: &none, BatchSize: 5}), func(int) bool { return false })

	s = h.Scroll(ctx, ScrollOptions{BatchSize: MaxScrollBatch + 1})
	if s.Next() {
		t.Fatal("Scroll with a batch too big: a point")
	}
	wantCode(t, "batch too big", s.Err(), codes.InvalidArgument, "16385")
	bad := Filter{Should: []Condition{Range("price")}}
	s = h.Scroll(ctx, ScrollOptions{Filter: &bad})
	if s.Next() {
		t.Fatal("Scroll with a bad filter: a point")
	}
	wantCode(t, "bad filter", s.Err(), codes.InvalidArgument, "filter.should[0].range")
}

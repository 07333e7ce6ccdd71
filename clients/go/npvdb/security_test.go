package npvdb

// WithTLS and WithToken against real servers with --tls-cert,
// --tls-client-ca and --token-file. The PKI is made at test time with
// openssl by tests/integration/make_pki.sh ($NPVDB_MAKE_PKI, set by CTest)
// in a temporary directory; nothing is committed.

import (
	"bytes"
	"context"
	"fmt"
	"io/ioutil"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "npvdb/v1"
)

const (
	writeToken   = "w-go-8Jm2Qx7Vb4Nc1Zp"
	readToken    = "r-go-5Tk9Lw3Hd6Rf0Yq"
	unknownToken = "u-go-2Gs7Pe4Ua1Xo8Ib"
)

// pkiDir makes the PKI (ca, other-ca, server, client, stranger) and a token
// file in a temporary directory; it skips without openssl or the script.
func pkiDir(t *testing.T) string {
	t.Helper()
	script := os.Getenv("NPVDB_MAKE_PKI")
	if script == "" || os.Getenv("NPVDB_SERVER") == "" {
		t.Skip("set NPVDB_MAKE_PKI and NPVDB_SERVER (CTest does)")
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl (scripts/install-deps.sh installs it)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("sh", script, filepath.Join(dir, "pki")).CombinedOutput(); err != nil {
		t.Fatalf("make_pki.sh: %v\n%s", err, out)
	}
	tokens := fmt.Sprintf("# go tests\n%s write\n%s read\n", writeToken, readToken)
	if err := ioutil.WriteFile(filepath.Join(dir, "pki", "tokens"), []byte(tokens), 0600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// secureServer starts a server with the flags (paths relative to the PKI
// given as "pki/NAME"), stopped at the end of the test, which fails unless
// it exits 0 and its log holds no token.
func secureServer(t *testing.T, dir string, flags ...string) string {
	t.Helper()
	for i, f := range flags {
		if strings.HasPrefix(f, "pki/") {
			flags[i] = filepath.Join(dir, f)
		}
	}
	sdir := filepath.Join(dir, fmt.Sprintf("server-%d", time.Now().UnixNano()))
	if err := os.MkdirAll(sdir, 0700); err != nil {
		t.Fatal(err)
	}
	cmd, log, addr, err := runServer(os.Getenv("NPVDB_SERVER"), sdir, flags...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopChecked(t, cmd, log) })
	return addr
}

func stopChecked(t *testing.T, cmd *exec.Cmd, log *bytes.Buffer) {
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		err = fmt.Errorf("no exit 30 s after SIGTERM")
	}
	if err != nil {
		t.Errorf("npvdb-server: %v\n%s", err, log.String())
	}
	for _, tok := range []string{writeToken, readToken, unknownToken} {
		if strings.Contains(log.String(), tok) {
			t.Errorf("a token is in the server's log")
		}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func dialT(t *testing.T, addr string, opts ...grpc.DialOption) *Client {
	t.Helper()
	c, err := Dial(ctxT(t), addr, opts...)
	if err != nil {
		t.Fatal("Dial:", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func wantSecCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: got %v, want %v", what, err, code)
	}
	for _, tok := range []string{writeToken, readToken, unknownToken} {
		if err != nil && strings.Contains(err.Error(), tok) {
			t.Fatalf("%s: the error shows a token: %v", what, err)
		}
	}
}

// exerciseSecure inits, inserts over one stream of two messages, and searches.
func exerciseSecure(t *testing.T, c *Client) {
	t.Helper()
	ctx := ctxT(t)
	const n, dim = 9000, 128 // 4.7 MB: two Insert messages
	data := randomRows(n, dim, 11)
	if _, err := c.Init(ctx, dim, InitOptions{Metric: pb.Metric_L2, NShards: 2, Replace: true,
		Train: data[:500*dim]}); err != nil {
		t.Fatal("Init:", err)
	}
	r, err := c.Insert(ctx, keysN(n), data)
	if err != nil {
		t.Fatal("Insert:", err)
	}
	if r.Inserted != n || r.Messages != 2 {
		t.Fatalf("Insert: %+v, want %d inserted in 2 messages", r, n)
	}
	hits, err := c.Search(ctx, data[77*dim:78*dim], dim, 1, SearchOptions{Nprobe: 2})
	if err != nil || len(hits) != 1 || len(hits[0].Keys) != 1 || hits[0].Keys[0] != "k77" {
		t.Fatalf("Search: %v %v", hits, err)
	}
}

func TestTLS(t *testing.T) {
	dir := pkiDir(t)
	pki := func(name string) string { return filepath.Join(dir, "pki", name) }
	addr := secureServer(t, dir, "--tls-cert", "pki/server.pem", "--tls-key", "pki/server.key",
		"--token-file", "pki/tokens")
	exerciseSecure(t, dialT(t, addr, WithTLS(pki("ca.pem"), "", ""), WithToken(writeToken)))

	// By name (the certificate has localhost), with the read token.
	port := addr[strings.LastIndex(addr, ":")+1:]
	c := dialT(t, "localhost:"+port, WithTLS(pki("ca.pem"), "", ""), WithToken(readToken))
	if info, err := c.Info(ctxT(t)); err != nil || info.Vectors != 9000 {
		t.Fatalf("Info over TLS by name: %v %v", info, err)
	}

	// Plaintext, another CA: the handshake fails.
	c = dialT(t, addr, WithToken(writeToken))
	_, err := c.Info(ctxT(t))
	wantSecCode(t, "plaintext to TLS", err, codes.Unavailable)
	c = dialT(t, addr, WithTLS(pki("other-ca.pem"), "", ""), WithToken(writeToken))
	_, err = c.Info(ctxT(t))
	wantSecCode(t, "another CA", err, codes.Unavailable)

	// TLS without a token.
	c = dialT(t, addr, WithTLS(pki("ca.pem"), "", ""))
	_, err = c.Info(ctxT(t))
	wantSecCode(t, "TLS, no token", err, codes.Unauthenticated)
}

func TestMutualTLS(t *testing.T) {
	dir := pkiDir(t)
	pki := func(name string) string { return filepath.Join(dir, "pki", name) }
	addr := secureServer(t, dir, "--tls-cert", "pki/server.pem", "--tls-key", "pki/server.key",
		"--tls-client-ca", "pki/ca.pem")
	exerciseSecure(t, dialT(t, addr, WithTLS(pki("ca.pem"), pki("client.pem"), pki("client.key"))))

	for name, opt := range map[string]grpc.DialOption{
		"no client certificate":       WithTLS(pki("ca.pem"), "", ""),
		"a certificate of another CA": WithTLS(pki("ca.pem"), pki("stranger.pem"), pki("stranger.key")),
	} {
		c := dialT(t, addr, opt)
		_, err := c.Info(ctxT(t))
		wantSecCode(t, name, err, codes.Unavailable)
	}
}

func TestTokensAndRoles(t *testing.T) {
	dir := pkiDir(t)
	addr := secureServer(t, dir, "--token-file", "pki/tokens")
	ctx := ctxT(t)

	_, err := dialT(t, addr).Info(ctx)
	wantSecCode(t, "no token", err, codes.Unauthenticated)
	_, err = dialT(t, addr, WithToken("")).Info(ctx) // "" = none
	wantSecCode(t, "empty token", err, codes.Unauthenticated)
	_, err = dialT(t, addr, WithToken(unknownToken)).Info(ctx)
	wantSecCode(t, "unknown token", err, codes.Unauthenticated)

	w := dialT(t, addr, WithToken(writeToken))
	exerciseSecure(t, w)

	// Read: reads work, every write is PermissionDenied, nothing applied.
	r := dialT(t, addr, WithToken(readToken))
	if n, err := r.Count(ctx, nil); err != nil || n != 9000 {
		t.Fatalf("Count with a read token: %d %v", n, err)
	}
	if _, err := r.GetClosest(ctx, randomRows(1, 128, 3), 128, 3, 2); err != nil {
		t.Fatal("GetClosest with a read token:", err)
	}
	_, err = r.Insert(ctx, []string{"x", "y"}, randomRows(2, 128, 4))
	wantSecCode(t, "Insert with a read token", err, codes.PermissionDenied)
	_, err = r.Init(ctx, 128, InitOptions{Replace: true})
	wantSecCode(t, "Init with a read token", err, codes.PermissionDenied)
	_, err = r.Delete(ctx, []string{"k1"})
	wantSecCode(t, "Delete with a read token", err, codes.PermissionDenied)
	_, err = r.Snapshot(ctx)
	wantSecCode(t, "Snapshot with a read token", err, codes.PermissionDenied)
	if n, err := w.Count(ctx, nil); err != nil || n != 9000 {
		t.Fatalf("Count after the refused writes: %d %v", n, err)
	}
	if d, err := w.Delete(ctx, []string{"k1"}); err != nil || d != 1 {
		t.Fatalf("Delete with the write token: %d %v", d, err)
	}
}

// Options that cannot work fail Dial, before anything is sent.
func TestSecurityOptionErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "absent.pem")
	notPEM := filepath.Join(dir, "junk.pem")
	if err := ioutil.WriteFile(notPEM, []byte("not a certificate\n"), 0600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		opt  grpc.DialOption
		want string
	}{
		{"missing CA", WithTLS(missing, "", ""), missing},
		{"CA not PEM", WithTLS(notPEM, "", ""), "no PEM certificate"},
		{"cert without key", WithTLS("", notPEM, ""), "go together"},
		{"key without cert", WithTLS("", "", notPEM), "go together"},
		{"bad key pair", WithTLS("", notPEM, notPEM), notPEM},
		{"token with a space", WithToken("two words"), "token"},
		{"token not ASCII", WithToken("caf\u00e9"), "token"},
	} {
		_, err := Dial(context.Background(), "127.0.0.1:1", c.opt)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want InvalidArgument with %q", c.name, err, c.want)
		}
		if strings.Contains(fmt.Sprint(err), "two words") {
			t.Errorf("%s: the error shows the token: %v", c.name, err)
		}
	}
}

// Dial(ctx, "") dials $NPVDB_ADDRESS, else 127.0.0.1:50051.
func TestDialAddressFromEnv(t *testing.T) {
	if serverAddr == "" {
		t.Skip("no npvdb-server: set NPVDB_SERVER")
	}
	t.Setenv("NPVDB_ADDRESS", serverAddr)
	if EnvAddress() != serverAddr {
		t.Fatalf("EnvAddress() = %q with NPVDB_ADDRESS=%q", EnvAddress(), serverAddr)
	}
	c := dialT(t, "")
	if _, err := c.Info(ctxT(t)); err != nil {
		t.Fatal("Info at $NPVDB_ADDRESS:", err)
	}
	t.Setenv("NPVDB_ADDRESS", "")
	if EnvAddress() != "127.0.0.1:50051" || DefaultAddress != "127.0.0.1:50051" {
		t.Fatalf("EnvAddress() = %q without NPVDB_ADDRESS", EnvAddress())
	}
}

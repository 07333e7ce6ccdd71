package npvdb

// TLS, mutual TLS and tokens (the server's --tls-cert, --tls-client-ca and
// --token-file), as options of Dial, and the address every npvdb client
// dials by default.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io/ioutil"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// DefaultAddress is the server's default listening address.
const DefaultAddress = "127.0.0.1:50051"

// EnvAddress is the address Dial uses when given "": $NPVDB_ADDRESS (the
// variable every npvdb client and the CLI read), else DefaultAddress.
func EnvAddress() string {
	if a := os.Getenv("NPVDB_ADDRESS"); a != "" {
		return a
	}
	return DefaultAddress
}

// option is a grpc.DialOption made by this package: Dial reports err (a
// file that cannot be read, a malformed token) before dialling, and knows
// whether it sets the transport.
type option struct {
	grpc.DialOption
	transport bool // sets transport credentials (TLS)
	err       error
}

// WithTLS connects with TLS. caFile holds the PEM CA certificate(s) that
// signed the server's certificate ("" = the system's roots). certFile and
// keyFile are this client's PEM certificate chain and private key, for a
// server with --tls-client-ca (mutual TLS); give both or neither. The
// server's certificate must name the host of the address dialled. The
// files are read when WithTLS is called; a file that cannot be read or
// parsed makes Dial fail with an InvalidArgument status error naming it. A
// failed handshake shows as an Unavailable status error on the first call.
// Do not combine with grpc.WithInsecure or other transport credentials.
func WithTLS(caFile, certFile, keyFile string) grpc.DialOption {
	cfg, err := tlsConfig(caFile, certFile, keyFile)
	if err != nil {
		return option{DialOption: grpc.EmptyDialOption{}, transport: true, err: err}
	}
	return option{DialOption: grpc.WithTransportCredentials(credentials.NewTLS(cfg)), transport: true}
}

func tlsConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := ioutil.ReadFile(caFile)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "npvdb: TLS CA file: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, status.Errorf(codes.InvalidArgument,
				"npvdb: TLS CA file %s holds no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, status.Error(codes.InvalidArgument,
			"npvdb: the TLS client certificate and key go together (give both files or neither)")
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument,
				"npvdb: TLS client certificate %s / key %s: %v", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// WithToken sends `authorization: Bearer <token>` with every call (a server
// with --token-file); "" sends none, so WithToken(os.Getenv("NPVDB_TOKEN"))
// follows the CLI's variable. It works over plaintext too (loopback); off
// loopback use it with WithTLS, since anyone on the path can read it. A
// token that is not printable ASCII without whitespace makes Dial fail
// with an InvalidArgument status error (which does not show the token).
func WithToken(token string) grpc.DialOption {
	if token == "" {
		return option{DialOption: grpc.EmptyDialOption{}}
	}
	for i := 0; i < len(token); i++ {
		if token[i] < '!' || token[i] > '~' {
			return option{DialOption: grpc.EmptyDialOption{}, err: status.Errorf(codes.InvalidArgument,
				"npvdb: token: byte %d is not printable ASCII or is whitespace "+
					"(tokens are as in the server's token file)", i)}
		}
	}
	return option{DialOption: grpc.WithPerRPCCredentials(bearer("Bearer " + token))}
}

// bearer is the authorization metadata of every call.
type bearer string

func (b bearer) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	return map[string]string{"authorization": string(b)}, nil
}

// RequireTransportSecurity is false so that a token works over plaintext
// on loopback, as the server allows.
func (b bearer) RequireTransportSecurity() bool { return false }

// dialOptions checks this package's options and adds grpc.WithInsecure when
// every option is this package's and none is WithTLS (no options at all:
// plaintext, as before).
func dialOptions(opts []grpc.DialOption) ([]grpc.DialOption, error) {
	plaintext := true
	for _, o := range opts {
		own, ok := o.(option)
		if !ok {
			plaintext = false // the caller's own: it sets the transport
			continue
		}
		if own.err != nil {
			return nil, own.err
		}
		if own.transport {
			plaintext = false
		}
	}
	out := make([]grpc.DialOption, 0, len(opts)+2)
	if plaintext {
		out = append(out, grpc.WithInsecure())
	}
	return append(out, opts...), nil
}

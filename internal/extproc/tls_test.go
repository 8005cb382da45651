package extproc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/sluice-gateway/sluice/internal/filter"
	"github.com/sluice-gateway/sluice/internal/ir"
	"github.com/sluice-gateway/sluice/internal/testutil"
)

// selfSigned returns a certificate for name and its PEM.
func selfSigned(t *testing.T, name string) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kd, _ := x509.MarshalECPrivateKey(key)
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
	if err != nil {
		t.Fatal(err)
	}
	return cert, certPEM
}

// A processor behind TLS (Backend appProtocol https) is verified against the CA and SNI.
func TestTLSProcessor(t *testing.T) {
	t.Parallel()
	cert, caPEM := selfSigned(t, "proc.example")
	p := newProc(t, echo, grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
	for _, tc := range []struct {
		name string
		tls  *ir.BackendTLS
		want int
	}{
		{"verified", &ir.BackendTLS{SNI: "proc.example", CAPEM: caPEM}, 200},
		{"unknown CA", &ir.BackendTLS{SNI: "proc.example"}, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := NewPool(PoolOptions{})
			defer pool.Close()
			b := backendOf(p)
			b.Protocol, b.TLS = ir.UpstreamHTTPS, tc.tls
			fac, err := pool.Build(&ir.ExtProc{Policy: "t/tls", Backend: b, Spec: spec()})
			if err != nil {
				t.Fatal(err)
			}
			g := newGateway(t, spec(), p)
			g.fac = fac
			if res := g.do("GET", "/", nil); res.Status != tc.want {
				t.Fatalf("status %d, want %d", res.Status, tc.want)
			}
			g.exchange()
		})
	}
}

// A processor that requires client certificates (mutual TLS) serves Sluice when the
// Backend names a certificate its CA issued, and refuses the handshake otherwise; the
// request then fails as FailClosed prescribes (500).
func TestMutualTLSProcessor(t *testing.T) {
	t.Parallel()
	serverCA, clientCA, otherCA := testutil.NewCA(t), testutil.NewCA(t), testutil.NewCA(t)
	serverCert, _, _ := serverCA.Issue(t, []string{"proc.example"})
	clients := x509.NewCertPool()
	clients.AppendCertsFromPEM(clientCA.PEM)
	p := newProc(t, echo, grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clients,
	})))
	_, goodCert, goodKey := clientCA.Issue(t, []string{"sluice.example"})
	_, badCert, badKey := otherCA.Issue(t, []string{"sluice.example"})
	for _, tc := range []struct {
		name      string
		cert, key []byte
		want      int
	}{
		{"client certificate of the processor's CA", goodCert, goodKey, 200},
		{"client certificate of another CA", badCert, badKey, 500},
		{"no client certificate", nil, nil, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := NewPool(PoolOptions{})
			defer pool.Close()
			b := backendOf(p)
			b.Protocol = ir.UpstreamHTTPS
			b.TLS = &ir.BackendTLS{SNI: "proc.example", CAPEM: serverCA.PEM, ClientCertPEM: tc.cert, ClientKeyPEM: tc.key}
			fac, err := pool.Build(&ir.ExtProc{Policy: "t/mtls", Backend: b, Spec: spec()})
			if err != nil {
				t.Fatal(err)
			}
			g := newGateway(t, spec(), p)
			g.fac = fac
			if res := g.do("GET", "/", nil); res.Status != tc.want {
				t.Fatalf("status %d, want %d", res.Status, tc.want)
			}
			if tc.want == 200 {
				g.exchange()
			}
		})
	}
}

var _ filter.Factory = (*factory)(nil)

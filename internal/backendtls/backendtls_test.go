package backendtls_test

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/backendtls"
	"github.com/sluice-gateway/sluice/internal/ir"
	"github.com/sluice-gateway/sluice/internal/testutil"
)

// serveTLS accepts TLS connections with cert on loopback and completes their handshakes.
func serveTLS(t *testing.T, cert tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
	return ln.Addr().String()
}

func TestVerification(t *testing.T) {
	t.Parallel()
	ca, other := testutil.NewCA(t), testutil.NewCA(t)
	cert, _, _ := ca.Issue(t, []string{"secure.example.com", "*.apps.example.com"}, "spiffe://cluster.local/ns/default/sa/app")
	addr := serveTLS(t, cert)

	tests := []struct {
		name string
		tls  ir.BackendTLS
		err  string // "" for success
	}{
		{"SNI matches", ir.BackendTLS{SNI: "secure.example.com", CAPEM: ca.PEM}, ""},
		{"SNI matches a wildcard", ir.BackendTLS{SNI: "web.apps.example.com", CAPEM: ca.PEM}, ""},
		{"SNI does not match", ir.BackendTLS{SNI: "other.example.com", CAPEM: ca.PEM}, "certificate is valid for"},
		{"unknown CA", ir.BackendTLS{SNI: "secure.example.com", CAPEM: other.PEM}, "unknown authority"},
		{"DNS SAN matches, SNI not checked", ir.BackendTLS{SNI: "internal.name", CAPEM: ca.PEM,
			SubjectAltDNSNames: []string{"nope.example.com", "secure.example.com"}}, ""},
		{"URI SAN matches", ir.BackendTLS{SNI: "internal.name", CAPEM: ca.PEM,
			SubjectAltURIs: []string{"spiffe://cluster.local/ns/default/sa/app"}}, ""},
		{"no SAN matches, though the SNI would", ir.BackendTLS{SNI: "secure.example.com", CAPEM: ca.PEM,
			SubjectAltDNSNames: []string{"nope.example.com"}, SubjectAltURIs: []string{"spiffe://cluster.local/ns/x/sa/y"}},
			"matches none of the subject alternative names"},
		{"SANs with an unknown CA", ir.BackendTLS{SNI: "internal.name", CAPEM: other.PEM,
			SubjectAltDNSNames: []string{"secure.example.com"}}, "unknown authority"},
		{"insecure skips everything", ir.BackendTLS{SNI: "whatever", InsecureSkipVerify: true,
			SubjectAltDNSNames: []string{"nope.example.com"}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := backendtls.Config(&tc.tls)
			if err != nil {
				t.Fatal(err)
			}
			d := &net.Dialer{Timeout: 5 * time.Second}
			conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
			if err == nil {
				conn.Close()
			}
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("handshake failed: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("handshake error %v, want one containing %q", err, tc.err)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	if _, err := backendtls.Config(&ir.BackendTLS{CAPEM: []byte("not PEM")}); err == nil {
		t.Error("a CA bundle without a certificate was accepted")
	}
	if _, err := backendtls.Config(&ir.BackendTLS{ClientCertPEM: []byte("x"), ClientKeyPEM: []byte("y")}); err == nil {
		t.Error("a bad client certificate was accepted")
	}
	cfg, err := backendtls.Config(nil)
	if err != nil || cfg.InsecureSkipVerify || cfg.RootCAs != nil || cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("Config(nil) = %+v, %v; want system roots, verification on, TLS 1.2+", cfg, err)
	}
}

func TestKey(t *testing.T) {
	t.Parallel()
	a := &ir.BackendTLS{SNI: "a", CAPEM: []byte("ca"), SubjectAltDNSNames: []string{"x"}}
	same := &ir.BackendTLS{SNI: "a", CAPEM: []byte("ca"), SubjectAltDNSNames: []string{"x"}}
	variants := []*ir.BackendTLS{
		{SNI: "b", CAPEM: []byte("ca"), SubjectAltDNSNames: []string{"x"}},
		{SNI: "a", CAPEM: []byte("cb"), SubjectAltDNSNames: []string{"x"}},
		{SNI: "a", CAPEM: []byte("ca"), SubjectAltURIs: []string{"x"}},
		{SNI: "a", CAPEM: []byte("ca"), SubjectAltDNSNames: []string{"x"}, InsecureSkipVerify: true},
		// Field boundaries count: moving bytes between fields changes the key.
		{SNI: "ac", CAPEM: []byte("a"), SubjectAltDNSNames: []string{"x"}},
	}
	if backendtls.Key(a) != backendtls.Key(same) {
		t.Error("equal settings, different keys")
	}
	for i, v := range variants {
		if backendtls.Key(v) == backendtls.Key(a) {
			t.Errorf("variant %d has the same key", i)
		}
	}
}

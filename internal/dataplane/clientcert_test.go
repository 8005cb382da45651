package dataplane

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"strconv"
	"testing"

	"github.com/sluice-gateway/sluice/internal/ir"
	"github.com/sluice-gateway/sluice/internal/testutil"
)

// mtlsSetup is an HTTPS port whose listeners validate client certificates differently:
// strict.example.com requires one from caA, fallback.example.com asks for one from caB
// but lets anyone in, open.example.com asks for none.
type mtlsSetup struct {
	g         *testGateway
	roots     *x509.CertPool
	certA     tls.Certificate // issued by caA
	certB     tls.Certificate // issued by caB
	listeners []*ir.Listener
}

func newMTLSSetup(t *testing.T) *mtlsSetup {
	srvCA, caA, caB := testutil.NewCA(t), testutil.NewCA(t), testutil.NewCA(t)
	hosts := []string{"fallback.example.com", "open.example.com", "strict.example.com"}
	_, srvPEM, srvKey := srvCA.Issue(t, hosts)
	s := &mtlsSetup{roots: x509.NewCertPool()}
	s.roots.AppendCertsFromPEM(srvCA.PEM)
	s.certA, _, _ = caA.Issue(t, []string{"client-a"})
	s.certB, _, _ = caB.Issue(t, []string{"client-b"})
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	validation := map[string]*ir.ClientValidation{
		"strict.example.com":   {CAPEM: caA.PEM},
		"fallback.example.com": {CAPEM: caB.PEM, InsecureFallback: true},
	}
	for _, host := range hosts {
		l := listener(host, host, vhostOf(host, tagged("route-"+host, prefix("/"), b)))
		l.Certificates = []ir.Certificate{{Name: "default/server", CertPEM: srvPEM, KeyPEM: srvKey}}
		l.ClientValidation = validation[host]
		s.listeners = append(s.listeners, l)
	}
	s.g = startGateway(t, Options{}, &ir.Config{Ports: []*ir.Port{{Protocol: ir.ProtocolHTTPS, Listeners: s.listeners}}})
	return s
}

// client returns a client that connects with server name sni, presenting cert if any.
func (s *mtlsSetup) client(t *testing.T, sni, alpn string, cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{ServerName: sni, RootCAs: s.roots, NextProtos: []string{alpn}}
	if cert != nil {
		// Presented whatever CA names the server hints, as a misconfigured client would.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	tr := &http.Transport{TLSClientConfig: cfg, Protocols: new(http.Protocols)}
	if alpn == "h2" {
		tr.Protocols.SetHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: wait}
}

func (s *mtlsSetup) base() string { return "https://127.0.0.1:" + strconv.Itoa(int(s.g.Port)) }

// TestClientCertificateValidation checks each validation mode in the handshake: a
// strict listener refuses clients without a certificate of its CA, a fallback listener
// lets every client in, a listener without validation asks for nothing.
func TestClientCertificateValidation(t *testing.T) {
	t.Parallel()
	s := newMTLSSetup(t)
	tests := []struct {
		host string
		cert *tls.Certificate
		ok   bool
	}{
		{"strict.example.com", &s.certA, true},
		{"strict.example.com", &s.certB, false},
		{"strict.example.com", nil, false},
		{"fallback.example.com", &s.certB, true},
		{"fallback.example.com", &s.certA, true},
		{"fallback.example.com", nil, true},
		{"open.example.com", nil, true},
		{"open.example.com", &s.certA, true},
	}
	for _, tc := range tests {
		for _, alpn := range []string{"h2", "http/1.1"} {
			name := tc.host + "/" + alpn + "/"
			switch tc.cert {
			case nil:
				name += "no-cert"
			case &s.certA:
				name += "cert-a"
			default:
				name += "cert-b"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				req, _ := http.NewRequest(http.MethodGet, s.base()+"/", nil)
				req.Host = tc.host
				resp, err := s.client(t, tc.host, alpn, tc.cert).Do(req)
				if !tc.ok {
					if err == nil {
						resp.Body.Close()
						t.Fatalf("got status %d, want the handshake refused", resp.StatusCode)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d, want 200", resp.StatusCode)
				}
			})
		}
	}
}

// TestClientCertificateAfterReload checks that a connection made while a listener asked
// for no client certificate cannot carry requests once it requires one: they get 421,
// and a new connection must present a certificate.
func TestClientCertificateAfterReload(t *testing.T) {
	t.Parallel()
	s := newMTLSSetup(t)
	host := "open.example.com"
	c := s.client(t, host, "http/1.1", nil)
	resp, body := get(t, c, s.base(), host, "/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("before the reload: status %d: %s", resp.StatusCode, body)
	}
	ca := testutil.NewCA(t)
	strict := *s.listeners[1]
	strict.ClientValidation = &ir.ClientValidation{CAPEM: ca.PEM}
	ls := []*ir.Listener{s.listeners[0], &strict, s.listeners[2]}
	if err := s.g.Apply(&ir.Config{Ports: []*ir.Port{{Number: s.g.Port, Protocol: ir.ProtocolHTTPS, Listeners: ls}}}, nil); err != nil {
		t.Fatal(err)
	}
	resp, body = get(t, c, s.base(), host, "/")
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("after the reload, on the old connection: status %d, want 421: %s", resp.StatusCode, body)
	}
	c.Transport.(*http.Transport).CloseIdleConnections()
	if resp, err := c.Get(s.base() + "/"); err == nil {
		resp.Body.Close()
		t.Fatalf("after the reload, a new connection without a certificate got status %d", resp.StatusCode)
	}
}

// TestClientAuthAllows checks the per-request check: only a chain verified up to one
// of the listener's CAs passes, whatever pool the handshake used.
func TestClientAuthAllows(t *testing.T) {
	t.Parallel()
	caA, caB := testutil.NewCA(t), testutil.NewCA(t)
	ca, err := compileClientAuth(&ir.ClientValidation{CAPEM: caA.PEM})
	if err != nil {
		t.Fatal(err)
	}
	chainTo := func(t *testing.T, c *testutil.CA) []*x509.Certificate {
		leaf, _, _ := c.Issue(t, []string{"client"})
		root, err := x509.ParseCertificate(mustDER(t, c.PEM))
		if err != nil {
			t.Fatal(err)
		}
		return []*x509.Certificate{leaf.Leaf, root}
	}
	if ca.allows(nil) || ca.allows(&tls.ConnectionState{}) {
		t.Error("allowed without a verified certificate")
	}
	if ca.allows(&tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{chainTo(t, caB)}}) {
		t.Error("allowed a chain verified up to another CA")
	}
	if !ca.allows(&tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{chainTo(t, caB), chainTo(t, caA)}}) {
		t.Error("refused a chain verified up to the listener's CA")
	}
	fallback, _ := compileClientAuth(&ir.ClientValidation{CAPEM: caA.PEM, InsecureFallback: true})
	if !fallback.allows(&tls.ConnectionState{}) || !(*clientAuth)(nil).allows(nil) {
		t.Error("AllowInsecureFallback or no validation refused a client")
	}
	if _, err := compileClientAuth(&ir.ClientValidation{CAPEM: []byte("no PEM here")}); err == nil {
		t.Error("a validation without CA compiled")
	}
}

func mustDER(t *testing.T, p []byte) []byte {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("no PEM block")
	}
	return b.Bytes
}

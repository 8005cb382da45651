package dataplane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/ir"
)

func TestH2CFromClient(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	g := startGateway(t, Options{}, simpleConfig(prefixRoute("r", "/", b)))
	for _, proto := range []string{"h1", "h2c"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			resp, body := get(t, clientFor(t, proto), g.URL, "h.test", "/x")
			want := map[string]int{"h1": 1, "h2c": 2}[proto]
			if resp.StatusCode != http.StatusOK || resp.ProtoMajor != want {
				t.Fatalf("status %d over %s, want 200 over HTTP/%d", resp.StatusCode, resp.Proto, want)
			}
			if s := decodeSeen(t, body); s.Host != "h.test" || s.Path != "/x" {
				t.Errorf("upstream got host %q path %q", s.Host, s.Path)
			}
		})
	}
}

func TestH2CUpstream(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "h2c", newH2CBackend(t, echoHandler("h2c")))
	b.Protocol = ir.UpstreamH2C
	g := startGateway(t, Options{}, simpleConfig(prefixRoute("r", "/", b)))
	for _, proto := range []string{"h1", "h2c"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			c := clientFor(t, proto)
			for range 3 {
				resp, body := get(t, c, g.URL, "", "/up")
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				if s := decodeSeen(t, body); s.Proto != "HTTP/2.0" || s.Path != "/up" {
					t.Errorf("upstream got %s %s", s.Proto, s.Path)
				}
			}
		})
	}
}

// selfSigned returns a PEM certificate and key for host, its own issuer.
func selfSigned(t testing.TB, host string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host},
		DNSNames:              []string{host},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func TestHTTPSWithSNI(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	roots := x509.NewCertPool()
	var listeners []*ir.Listener
	for _, host := range []string{"a.example.com", "b.example.com"} {
		cert, key := selfSigned(t, host)
		roots.AppendCertsFromPEM(cert)
		l := listener(host, host, vhostOf(host, tagged("route-"+host, prefix("/"), b)))
		l.Certificates = []ir.Certificate{{Name: "default/" + host, CertPEM: cert, KeyPEM: key}}
		listeners = append(listeners, l)
	}
	g := startGateway(t, Options{}, &ir.Config{Ports: []*ir.Port{{Protocol: ir.ProtocolHTTPS, Listeners: listeners}}})
	base := "https://127.0.0.1:" + strconv.Itoa(int(g.Port))
	for _, host := range []string{"a.example.com", "b.example.com"} {
		for _, alpn := range []string{"h2", "http/1.1"} {
			t.Run(host+"/"+alpn, func(t *testing.T) {
				t.Parallel()
				tr := &http.Transport{
					TLSClientConfig: &tls.Config{ServerName: host, RootCAs: roots},
					Protocols:       new(http.Protocols),
				}
				if alpn == "h2" {
					tr.Protocols.SetHTTP2(true)
				} else {
					tr.Protocols.SetHTTP1(true)
					// The HTTP/1 transport offers no ALPN unless asked.
					tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
				}
				t.Cleanup(tr.CloseIdleConnections)
				resp, body := get(t, &http.Client{Transport: tr, Timeout: wait}, base, host, "/secure")
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				if got := resp.TLS.NegotiatedProtocol; got != alpn {
					t.Errorf("ALPN %q, want %q", got, alpn)
				}
				if got := resp.TLS.PeerCertificates[0].Subject.CommonName; got != host {
					t.Errorf("certificate for %q, want %q", got, host)
				}
				s := decodeSeen(t, body)
				if s.Header.Get("X-Route") != "route-"+host || s.Header.Get("X-Forwarded-Proto") != "https" {
					t.Errorf("upstream got route %q, X-Forwarded-Proto %q", s.Header.Get("X-Route"), s.Header.Get("X-Forwarded-Proto"))
				}
			})
		}
	}
}

// TestMisdirectedRequest checks that on an HTTPS port a request whose Host belongs to
// another listener than the one its TLS server name chose is answered 421, whatever the
// protocol, while hosts of the chosen listener are routed (or 404).
func TestMisdirectedRequest(t *testing.T) {
	t.Parallel()
	b := backendOf(t, "echo", echoBackend(t, "echo"))
	cert, key := selfSigned(t, "example.org")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(cert)
	var listeners []*ir.Listener
	// Most specific first, as the translator sorts them.
	for _, host := range []string{"second.example.org", "fourth.wild.example", "*.wild.example", ""} {
		l := listener("l-"+host, host, vhostOf(host, tagged("route-"+host, prefix("/"), b)))
		if host == "" {
			l.VirtualHosts = []*ir.VirtualHost{vhostOf("example.org", tagged("route-any", prefix("/"), b))}
		}
		l.Certificates = []ir.Certificate{{Name: "default/cert", CertPEM: cert, KeyPEM: key}}
		listeners = append(listeners, l)
	}
	g := startGateway(t, Options{}, &ir.Config{Ports: []*ir.Port{{Protocol: ir.ProtocolHTTPS, Listeners: listeners}}})
	base := "https://127.0.0.1:" + strconv.Itoa(int(g.Port))
	for _, tc := range []struct {
		sni, host string
		want      int
	}{
		{"example.org", "example.org", 200},
		{"example.org", "second.example.org", 421},
		{"example.org", "unknown.example.org", 404},
		{"second.example.org", "second.example.org", 200},
		{"second.example.org", "example.org", 421},
		{"third.wild.example", "fifth.wild.example", 200},
		{"third.wild.example", "fourth.wild.example", 421},
		{"fourth.wild.example", "fifth.wild.example", 421},
		{"unknown.example.org", "example.org", 200},
		{"", "second.example.org", 200}, // no server name: nothing to contradict
	} {
		for _, proto := range []string{"h2", "http/1.1"} {
			t.Run(tc.sni+"/"+tc.host+"/"+proto, func(t *testing.T) {
				t.Parallel()
				tr := &http.Transport{
					// The certificate is for example.org; the server name varies.
					TLSClientConfig: &tls.Config{ServerName: tc.sni, RootCAs: roots, InsecureSkipVerify: true, NextProtos: []string{proto}},
					Protocols:       new(http.Protocols),
				}
				if proto == "h2" {
					tr.Protocols.SetHTTP2(true)
				} else {
					tr.Protocols.SetHTTP1(true)
				}
				t.Cleanup(tr.CloseIdleConnections)
				resp, body := get(t, &http.Client{Transport: tr, Timeout: wait}, base, tc.host, "/")
				if resp.StatusCode != tc.want {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
				}
			})
		}
	}
}

package admin

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gateway/sluice/internal/ir"
	"github.com/sluice-gateway/sluice/internal/provider/file"
	"github.com/sluice-gateway/sluice/internal/translate"
)

func selfSigned(t *testing.T, host string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// TestConfigRedactsSecrets serves, on /config, a configuration loaded and translated as
// `sluice run` does, with an HTTPS listener whose Secret holds a private key, header
// modifiers and matches carrying credentials, and a processor with credential metadata;
// then the same configuration with key material where the types would not hide it. No
// secret may appear in the output, in any encoding; the rest of the configuration does.
func TestConfigRedactsSecrets(t *testing.T) {
	t.Parallel()
	cert, key := selfSigned(t, "shop.example.com")
	b64 := base64.StdEncoding.EncodeToString
	yaml := `apiVersion: v1
kind: Secret
metadata: {name: shop-tls}
type: kubernetes.io/tls
data:
  tls.crt: ` + b64(cert) + `
  tls.key: ` + b64(key) + `
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web}
spec:
  gatewayClassName: sluice
  listeners:
  - name: https
    port: 8443
    protocol: HTTPS
    hostname: shop.example.com
    tls: {certificateRefs: [{name: shop-tls}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop}
spec:
  parentRefs: [{name: web}]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /internal}
      headers: [{name: X-Api-Key, value: match-s3cr3t}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: Authorization, value: "Bearer upstream-s3cr3t"}, {name: X-Visible, value: plain-value}]
    backendRefs: [{group: gateway.sluice.dev, kind: Backend, name: api}]
---
apiVersion: gateway.sluice.dev/v1alpha1
kind: Backend
metadata: {name: api}
spec:
  endpoints: [{host: 127.0.0.1, port: 8000}]
---
apiVersion: gateway.sluice.dev/v1alpha1
kind: Backend
metadata: {name: proc}
spec:
  endpoints: [{host: 127.0.0.1, port: 9000}]
---
apiVersion: gateway.sluice.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: proc}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: web}]
  traffic:
    extProc:
      backendRef: {group: gateway.sluice.dev, kind: Backend, name: proc}
      grpcInitialMetadata: {authorization: "Bearer proc-s3cr3t", x-tenant: tenant-a}
`
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := file.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	result := translate.Translate(res, translate.Options{AllGatewayClasses: true})
	if len(result.Problems) > 0 {
		t.Fatalf("problems: %v", result.Problems)
	}
	var served any = result
	s := New(prometheus.NewRegistry(), func() any { return served }, Options{})
	get := func() string {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/config", nil))
		b, _ := io.ReadAll(rec.Body)
		if rec.Code != http.StatusOK {
			t.Fatalf("/config = %d %s", rec.Code, b)
		}
		return string(b)
	}
	keyBody := strings.Join(strings.Split(strings.TrimSpace(string(key)), "\n")[1:2], "")
	secrets := []string{string(key), b64(key), keyBody, "PRIVATE KEY", "match-s3cr3t", "upstream-s3cr3t", "proc-s3cr3t"}
	check := func(what, out string) {
		t.Helper()
		for _, sec := range secrets {
			if strings.Contains(out, sec) {
				t.Errorf("%s: /config shows %q:\n%s", what, sec, out)
			}
		}
		for _, want := range []string{"shop.example.com", "default/shop-tls", "plain-value", "tenant-a", redacted} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: /config lacks %q:\n%s", what, want, out)
			}
		}
	}
	check("translated configuration", get())

	// Key material where the types do not hide it: a field of another name, a problem
	// message quoting a file, a Secret object.
	type leaky struct {
		Result   *translate.Result `json:"result"`
		KeyCopy  string            `json:"keyCopy"`
		Problems []translate.Problem
		Secret   map[string]any `json:"secret"`
		Headers  []ir.Header    `json:"headers"`
	}
	served = leaky{
		Result:   result,
		KeyCopy:  string(key),
		Problems: []translate.Problem{{Kind: "Secret", Name: "shop-tls", Message: "cannot parse " + string(key)}},
		Secret:   map[string]any{"kind": "Secret", "data": map[string]string{"anything": b64(key)}},
		Headers:  []ir.Header{{Name: "Cookie", Value: "session=upstream-s3cr3t"}},
	}
	check("leaky configuration", get())
}

package dataplane

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"sync"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// clientAuth is the compiled client certificate validation of an HTTPS listener (a
// Gateway's spec.tls.frontend). It is enforced twice: in the handshake, chosen by SNI
// like the certificate (see certTable), and on each request, against the listener its
// Host selects, since a connection made for one listener (no SNI, another listener's
// SNI, or a configuration since reloaded) must not carry requests of another that asks
// more of its clients.
type clientAuth struct {
	insecureFallback bool
	pool             *x509.CertPool
	// roots are the DER encodings of the trusted certificates: a chain verified against
	// any pool that ends in one of them verifies against this one.
	roots map[string]bool

	once sync.Once
	cfg  *tls.Config
}

// compileClientAuth parses v; nil gives nil (no client certificate asked).
func compileClientAuth(v *ir.ClientValidation) (*clientAuth, error) {
	if v == nil {
		return nil, nil
	}
	ca := &clientAuth{insecureFallback: v.InsecureFallback, pool: x509.NewCertPool(), roots: map[string]bool{}}
	rest := v.CAPEM
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		ca.pool.AddCert(c)
		ca.roots[string(c.Raw)] = true
	}
	if len(ca.roots) == 0 {
		// The translator refuses this; a listener that verifies against nothing must
		// not be served as if it verified nothing.
		return nil, errors.New("client validation without a CA certificate")
	}
	return ca, nil
}

// serverConfig returns base with the client certificate settings of c, built once per
// compiled listener. AllowValidOnly requires a certificate that verifies;
// AllowInsecureFallback asks for one (the CA names hint which) but checks nothing, so
// that a missing or foreign certificate does not fail the handshake.
func (c *clientAuth) serverConfig(base *tls.Config) *tls.Config {
	c.once.Do(func() {
		cfg := base.Clone()
		cfg.GetConfigForClient = nil
		cfg.ClientCAs = c.pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		if c.insecureFallback {
			cfg.ClientAuth = tls.RequestClientCert
		}
		c.cfg = cfg
	})
	return c.cfg
}

// allows reports whether a request on a connection in state cs may be served by a
// listener with client validation c: always without validation or with
// AllowInsecureFallback, else only when the handshake verified the client's
// certificate up to one of c's CAs.
func (c *clientAuth) allows(cs *tls.ConnectionState) bool {
	if c == nil || c.insecureFallback {
		return true
	}
	if cs == nil {
		return false
	}
	for _, chain := range cs.VerifiedChains {
		if len(chain) > 0 && c.roots[string(chain[len(chain)-1].Raw)] {
			return true
		}
	}
	return false
}

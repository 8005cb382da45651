// Package backendtls builds the client side of TLS connections to backends and external
// processors from their IR settings, so that the data plane and the ext_proc client
// verify servers the same way.
package backendtls

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/sluice-gateway/sluice/internal/ir"
)

// Config returns the client TLS configuration of t (nil: verify against the system roots
// with the endpoint's host as the server name). NextProtos is left to the caller.
//
// The server is verified against t.CAPEM (else the system roots) and, when t names
// subject alternative names, against those instead of the SNI: the certificate must
// carry one of them. The SNI is sent either way.
func Config(t *ir.BackendTLS) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t == nil {
		return cfg, nil
	}
	cfg.ServerName = t.SNI
	cfg.InsecureSkipVerify = t.InsecureSkipVerify //nolint:gosec // the operator's explicit choice, for tests
	if len(t.CAPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(t.CAPEM) {
			return nil, errors.New("backend TLS: no certificate found in the CA bundle")
		}
		cfg.RootCAs = pool
	}
	if len(t.ClientCertPEM) > 0 {
		cert, err := tls.X509KeyPair(t.ClientCertPEM, t.ClientKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("backend TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if !t.InsecureSkipVerify && (len(t.SubjectAltDNSNames) > 0 || len(t.SubjectAltURIs) > 0) {
		// crypto/tls can only check the chain and the SNI together; with subject
		// alternative names the SNI must not be what is checked, so the chain is
		// verified here instead, followed by the names.
		roots := cfg.RootCAs
		dns, uris := slices.Clone(t.SubjectAltDNSNames), slices.Clone(t.SubjectAltURIs)
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifySANs(cs.PeerCertificates, roots, dns, uris)
		}
	}
	return cfg, nil
}

// verifySANs verifies the chain of certs against roots (nil: the system roots) and that
// the leaf carries one of the DNS names or URIs.
func verifySANs(certs []*x509.Certificate, roots *x509.CertPool, dns, uris []string) error {
	if len(certs) == 0 {
		return errors.New("backend TLS: the server sent no certificate")
	}
	leaf := certs[0]
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
		return fmt.Errorf("backend TLS: %w", err)
	}
	for _, name := range dns {
		if leaf.VerifyHostname(name) == nil {
			return nil
		}
	}
	for _, want := range uris {
		for _, u := range leaf.URIs {
			if u.String() == want {
				return nil
			}
		}
	}
	return fmt.Errorf("backend TLS: the server's certificate matches none of the subject alternative names %q %q", dns, uris)
}

// Key identifies the settings of t, for sharing one transport or connection among
// backends with equal TLS settings. Equal settings give equal keys.
func Key(t *ir.BackendTLS) string {
	if t == nil {
		return ""
	}
	h := sha256.New()
	part := func(b []byte) {
		h.Write([]byte(strconv.Itoa(len(b))))
		h.Write([]byte{':'})
		h.Write(b)
	}
	part([]byte(t.SNI))
	part([]byte(strconv.FormatBool(t.InsecureSkipVerify)))
	part(t.CAPEM)
	part(t.ClientCertPEM)
	part(t.ClientKeyPEM)
	for _, list := range [][]string{t.SubjectAltDNSNames, t.SubjectAltURIs} {
		part([]byte(strconv.Itoa(len(list))))
		for _, s := range list {
			part([]byte(s))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Package admin serves the gateway's admin listener: health, readiness, Prometheus
// metrics, the effective configuration and, when enabled, the Go profiler.
package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server is the admin HTTP handler.
type Server struct {
	mux   *http.ServeMux
	ready atomic.Bool
}

// ConfigFunc returns the effective configuration to show on /config, or nil when none
// serves yet.
type ConfigFunc func() any

// Options tune the admin handler.
type Options struct {
	// Pprof serves the Go profiler under /debug/pprof/. Off by default: profiles hold
	// stack traces, the command line and heap contents, and a CPU profile or trace costs
	// the process for as long as a caller asks, so the profiler is something an operator
	// switches on to debug, not a standing endpoint (Envoy's admin has none).
	Pprof bool
}

// New returns the admin handler. gatherer is the registry /metrics exposes; config feeds
// /config, which is served with its secrets redacted (see Redact).
func New(gatherer prometheus.Gatherer, config ConfigFunc, o Options) *Server {
	s := &Server{mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !s.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: no configuration serves yet\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("GET /config", func(w http.ResponseWriter, r *http.Request) {
		cfg := config()
		if cfg == nil {
			http.Error(w, "no configuration serves yet", http.StatusServiceUnavailable)
			return
		}
		out, err := Redact(cfg)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	})
	if o.Pprof {
		s.mux.HandleFunc("/debug/pprof/", pprof.Index)
		s.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		s.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		s.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return s
}

// SetReady marks the gateway ready (or not) on /readyz.
func (s *Server) SetReady(ok bool) { s.ready.Store(ok) }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// redacted replaces every value Redact hides.
const redacted = "[redacted]"

// Redact returns v as indented JSON with what looks like a secret replaced by
// "[redacted]". It works on the JSON rather than on the types, so that a field added to
// the configuration later is covered without anyone remembering this function: the
// values of fields and map keys named like credentials (a TLS key, a password, a token,
// an Authorization or Cookie header...), the value of {name, value} pairs whose name is
// such a header (header modifiers, header matches), the data of Secret objects, and any
// string holding a PEM block or an HTTP credential ("Bearer ...", "Basic ...").
func Redact(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding the configuration: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, fmt.Errorf("decoding the configuration: %w", err)
	}
	out, err := json.MarshalIndent(redactValue(tree), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the redacted configuration: %w", err)
	}
	return append(out, '\n'), nil
}

func redactValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		secretObject := v["kind"] == "Secret"
		for k, e := range v {
			if sensitiveName(k) || (secretObject && (k == "data" || k == "stringData")) {
				v[k] = redacted
				continue
			}
			v[k] = redactValue(e)
		}
		// {name, value}: a header set, added or matched.
		if name, ok := v["name"].(string); ok && sensitiveName(name) {
			if _, ok := v["value"]; ok {
				v["value"] = redacted
			}
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = redactValue(e)
		}
		return v
	case string:
		if credentialValue(v) {
			return redacted
		}
		return v
	}
	return v
}

// sensitiveName reports whether a field, map key or header name says its value is a
// secret.
func sensitiveName(name string) bool {
	n := strings.ToLower(name)
	switch n {
	case "tls.key", "ssh-privatekey", "authorization", "proxy-authorization", "cookie", "set-cookie":
		return true
	}
	for _, part := range []string{"password", "passwd", "secret", "token", "apikey", "api-key", "api_key",
		"privatekey", "private-key", "private_key", "keypem", "credential", "x-auth", "session"} {
		if strings.Contains(n, part) {
			return true
		}
	}
	return false
}

// credentialValue reports whether a string holds key material or an HTTP credential,
// whatever field it is in (a problem message quoting a file, say).
func credentialValue(s string) bool {
	if strings.Contains(s, "-----BEGIN") || strings.Contains(s, "PRIVATE KEY") {
		return true
	}
	l := strings.ToLower(strings.TrimSpace(s))
	return strings.HasPrefix(l, "bearer ") || strings.HasPrefix(l, "basic ")
}

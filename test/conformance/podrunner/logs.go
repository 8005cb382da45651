package podrunner

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The log server plays the kubelet's read-only log endpoint, which the API server
// proxies "pods/{name}/log" to (the conformance suite's mirror tests read the echo
// servers' logs through it): GET /containerLogs/{namespace}/{pod}/{container} over
// HTTPS, on the Node's InternalIP and the port its status reports as
// daemonEndpoints.kubeletEndpoint. The API server is given no kubelet CA, so it does not
// verify the self-signed certificate; the server asks for no client certificate.
//
// Container output is a plain file without timestamps, so of the API server's query
// parameters only tailLines and limitBytes are applied: sinceSeconds and sinceTime
// return the whole log (a superset, which the suite's readers, matching lines on unique
// request IDs, tolerate), timestamps adds none, and follow returns what there is now.

// startLogServer listens on the host's bridge address; the bridge must exist.
func (r *Runner) startLogServer() error {
	cert, err := selfSigned(r.hostIP.String())
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(r.hostIP.String(), "0"))
	if err != nil {
		return fmt.Errorf("log server: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", r.serveLogs)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	r.logServer, r.logPort = srv, int32(ln.Addr().(*net.TCPAddr).Port)
	done := make(chan struct{})
	r.logDone = done
	go func() {
		defer close(done)
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.cfg.Logf("podrunner: log server: %v", err)
		}
	}()
	return nil
}

// stopLogServer closes the log server, if started, and waits for it.
func (r *Runner) stopLogServer() {
	if r.logServer == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.logServer.Shutdown(ctx); err != nil {
		_ = r.logServer.Close()
	}
	<-r.logDone
	r.logServer = nil
}

// serveLogs answers one container's output, as pod.go writes it.
func (r *Runner) serveLogs(w http.ResponseWriter, req *http.Request) {
	ns, name, container := req.PathValue("namespace"), req.PathValue("pod"), req.PathValue("container")
	for _, s := range []string{ns, name, container} {
		// Names of API objects: no separators, and nothing that climbs out of Dir.
		if s == "" || strings.HasPrefix(s, ".") || strings.ContainsAny(s, `/\`) {
			http.Error(w, "bad name "+strconv.Quote(s), http.StatusBadRequest)
			return
		}
	}
	data, err := os.ReadFile(filepath.Join(r.cfg.Dir, ns+"_"+name, container+".log"))
	if errors.Is(err, os.ErrNotExist) {
		http.Error(w, fmt.Sprintf("container %s of pod %s/%s has no output here", container, ns, name), http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	q := req.URL.Query()
	if v := q.Get("tailLines"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			http.Error(w, "tailLines: expected a number of lines, got "+strconv.Quote(v), http.StatusBadRequest)
			return
		}
		data = tailLines(data, n)
	}
	if v := q.Get("limitBytes"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			http.Error(w, "limitBytes: expected a positive number of bytes, got "+strconv.Quote(v), http.StatusBadRequest)
			return
		}
		data = data[:min(n, len(data))]
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(data)
}

// tailLines returns the last n lines of data (a last line without a newline counts).
func tailLines(data []byte, n int) []byte {
	if n == 0 {
		return nil
	}
	end := len(data)
	if end > 0 && data[end-1] == '\n' {
		end--
	}
	for i := end - 1; i >= 0; i-- {
		if data[i] == '\n' {
			n--
			if n == 0 {
				return data[i+1:]
			}
		}
	}
	return data
}

// selfSigned makes a certificate for the log server's address.
func selfSigned(ip string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sluice-conformance-kubelet"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP(ip)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("log server certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

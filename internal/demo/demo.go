// Package demo runs the documented example in one process: httpbin, the sample external
// processor, and a gateway wired to both by the file-mode configuration in config.yaml.tmpl.
package demo

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"text/template"
	"time"

	"github.com/mccutchen/go-httpbin/v2/httpbin"

	"github.com/sluice-gateway/sluice/internal/app"
	"github.com/sluice-gateway/sluice/internal/sampleproc"
)

//go:embed config.yaml.tmpl
var configTemplate string

// Ports are where the demo's parts listen.
type Ports struct {
	GatewayPort   int
	HTTPBinHost   string
	HTTPBinPort   int
	ProcessorHost string
	ProcessorPort int
}

// Config renders the demo's configuration for the given ports.
func Config(p Ports) (string, error) {
	t, err := template.New("demo").Parse(configTemplate)
	if err != nil {
		return "", fmt.Errorf("demo configuration template: %w", err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, p); err != nil {
		return "", fmt.Errorf("demo configuration template: %w", err)
	}
	return b.String(), nil
}

// Options configure the demo.
type Options struct {
	// Gateway is the gateway's settings; ConfigPaths and Resources are filled in here.
	Gateway app.Options
	// Port is the gateway's listener port. Default 8080.
	Port int
	// HTTPBinAddr and ProcessorAddr are where httpbin and the sample processor listen.
	// Defaults 127.0.0.1:8000 and 127.0.0.1:18080; port 0 picks a free one.
	HTTPBinAddr   string
	ProcessorAddr string
	// BackendsOnly runs httpbin and the processor without the gateway, for a gateway run
	// separately with `sluice run --config examples/extproc`.
	BackendsOnly bool
	// Out receives the instructions printed for the user.
	Out io.Writer
}

// Run serves the demo until ctx is done.
func Run(ctx context.Context, o Options) error {
	if o.Port == 0 {
		o.Port = 8080
	}
	if o.HTTPBinAddr == "" {
		o.HTTPBinAddr = "127.0.0.1:8000"
	}
	if o.ProcessorAddr == "" {
		o.ProcessorAddr = "127.0.0.1:18080"
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	log := o.Gateway.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	binLn, err := net.Listen("tcp", o.HTTPBinAddr)
	if err != nil {
		return fmt.Errorf("httpbin listener: %w", err)
	}
	procLn, err := net.Listen("tcp", o.ProcessorAddr)
	if err != nil {
		binLn.Close()
		return fmt.Errorf("sample processor listener: %w", err)
	}
	binSrv := &http.Server{Handler: httpbin.New(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- ignoreClosed(binSrv.Serve(binLn)) }()
	go func() {
		errc <- sampleproc.Serve(ctx, procLn, sampleproc.Options{Logger: log.With("component", "sample-processor")})
	}()
	defer func() {
		binSrv.Close()
		cancel()
		for range 2 {
			<-errc
		}
	}()

	ports := Ports{
		GatewayPort:   o.Port,
		HTTPBinHost:   "127.0.0.1",
		HTTPBinPort:   binLn.Addr().(*net.TCPAddr).Port,
		ProcessorHost: "127.0.0.1",
		ProcessorPort: procLn.Addr().(*net.TCPAddr).Port,
	}
	if o.BackendsOnly {
		fmt.Fprintf(o.Out, "httpbin on %s, sample processor (gRPC, h2c) on %s\n", binLn.Addr(), procLn.Addr())
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		}
	}
	cfg, err := Config(ports)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sluice-demo-")
	if err != nil {
		return fmt.Errorf("demo configuration: %w", err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "demo.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("demo configuration: %w", err)
	}
	g := o.Gateway
	g.ConfigPaths = []string{path}
	userReady := g.Ready
	g.Ready = func(addrs map[int32]net.Addr, adminAddr net.Addr) {
		printWelcome(o.Out, o.Port, adminAddr)
		if userReady != nil {
			userReady(addrs, adminAddr)
		}
	}
	return app.Run(ctx, g)
}

func printWelcome(w io.Writer, port int, adminAddr net.Addr) {
	base := "localhost:" + strconv.Itoa(port)
	fmt.Fprintf(w, `Sluice demo: gateway on :%d, routing host www.example.com to httpbin, with the
sample external processor attached to the Gateway (TrafficPolicy "extproc").

Try:
  curl -i %s/headers -H 'host: www.example.com'
  curl -i %s/headers -H 'host: www.example.com' -H 'instructions: {"addHeaders":{"extproc":"true"}}'
  curl -i '%s/response-headers?instructions=%%7B%%22addHeaders%%22%%3A%%7B%%22x-from-processor%%22%%3A%%22yes%%22%%7D%%7D' -H 'host: www.example.com'
`, port, base, base, base)
	if adminAddr != nil {
		fmt.Fprintf(w, "  curl -s %s/config    # the effective configuration\n  curl -s %s/metrics\n", "http://"+adminAddr.String(), "http://"+adminAddr.String())
	}
	fmt.Fprintf(w, "\nThe same configuration for file mode: sluice demo --print-config. Ctrl-C stops.\n")
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"

	"github.com/sluice-gateway/sluice/internal/demo"
)

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sluice demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 8080, "the gateway's listener port")
	printConfig := fs.Bool("print-config", false, "print the demo's configuration as file-mode YAML and exit")
	httpbinAddr := fs.String("httpbin-addr", "127.0.0.1:8000", "where the demo's httpbin listens")
	procAddr := fs.String("processor-addr", "127.0.0.1:18080", "where the demo's sample external processor listens (gRPC, h2c)")
	backendsOnly := fs.Bool("backends-only", false, "run only httpbin and the sample processor, for `sluice run --config examples/extproc`")
	var sf serveFlags
	sf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *printConfig {
		cfg, err := demo.Config(demo.Ports{
			GatewayPort: *port, HTTPBinHost: "127.0.0.1", HTTPBinPort: portOf(*httpbinAddr, 8000),
			ProcessorHost: "127.0.0.1", ProcessorPort: portOf(*procAddr, 18080),
		})
		if err != nil {
			return err
		}
		fmt.Fprint(stdout, cfg)
		return nil
	}
	o, err := sf.options(os.Stdout, stderr)
	if err != nil {
		return err
	}
	return demo.Run(ctx, demo.Options{
		Gateway:       o,
		Port:          *port,
		HTTPBinAddr:   *httpbinAddr,
		ProcessorAddr: *procAddr,
		BackendsOnly:  *backendsOnly,
		Out:           stderr,
	})
}

// portOf returns the port of a host:port address, or def.
func portOf(addr string, def int) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return def
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return def
	}
	return n
}

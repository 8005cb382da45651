// Command proc runs Sluice's sample external processor (package sampleproc, the same code
// as cmd/extproc-example) on a loopback address, for bench/run.
//
// Usage:
//
//	proc -addr 127.0.0.1:18095
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluice-gateway/sluice/internal/sampleproc"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18095", "loopback host:port to serve gRPC (h2c) on")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := sampleproc.ListenAndServe(ctx, *addr, sampleproc.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, "proc:", err)
		stop()
		os.Exit(1)
	}
}

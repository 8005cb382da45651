// Command extproc-example runs the sample external processor from Sluice's documentation:
// a plaintext gRPC server that follows the JSON `instructions` header of each request and
// response. It exists so the documented walkthrough can be followed with nothing but
// `go run`; see package sampleproc for the behaviour.
//
// Usage:
//
//	extproc-example [-grpcport 18080] [--add-header name:value ...]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/sluice-gateway/sluice/internal/sampleproc"
)

// headerFlags collects repeated --add-header flags, failing at parse time so that a typo
// is reported before the server starts.
type headerFlags [][2]string

func (h *headerFlags) String() string {
	parts := make([]string, 0, len(*h))
	for _, kv := range *h {
		parts = append(parts, kv[0]+":"+kv[1])
	}
	return strings.Join(parts, ",")
}

func (h *headerFlags) Set(arg string) error {
	kv, err := sampleproc.ParseHeaderArg(arg)
	if err != nil {
		return err
	}
	*h = append(*h, kv)
	return nil
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(os.Args[1:], log); err != nil {
		log.Error("extproc-example failed", "error", err)
		os.Exit(1)
	}
}

// run is main without the exit, so that deferred cleanup (the signal handler) always runs.
func run(args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("extproc-example", flag.ContinueOnError)
	port := fs.Int("grpcport", 18080, "TCP port for the plaintext gRPC server (all interfaces)")
	var add headerFlags
	fs.Var(&add, "add-header", "header `name:value` to set on every request (repeatable)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("parsing flags: %w", err)
	}
	if *port < 0 || *port > 65535 {
		return fmt.Errorf("-grpcport %d: out of range", *port)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	addr := net.JoinHostPort("0.0.0.0", strconv.Itoa(*port))
	return sampleproc.ListenAndServe(ctx, addr, sampleproc.Options{
		AddHeaders: add,
		Logger:     log,
	})
}

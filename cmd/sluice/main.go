// Command sluice is an HTTP gateway configured with Gateway API resources, whose headline
// feature is Envoy-compatible external processing.
//
//	sluice run --config PATH        serve YAML files or directories (file mode)
//	sluice kube                     serve the Gateways of a Kubernetes cluster (Kubernetes mode)
//	sluice validate --config PATH   check a configuration and print every problem
//	sluice demo                     the documented example, in one process
//	sluice version                  print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-gateway/sluice/internal/app"
	"github.com/sluice-gateway/sluice/internal/dataplane"
)

// version is set at build time with -ldflags "-X main.version=..."; otherwise the module
// version or VCS revision is shown.
var version = ""

const usage = `Sluice: an HTTP gateway with Envoy-compatible external processing.

Usage:
  sluice run --config PATH [--config PATH ...] [flags]   serve a file-mode configuration
  sluice kube [--kubeconfig PATH] [flags]                 serve Gateway API resources of a cluster
  sluice validate --config PATH [...]                     check a configuration
  sluice demo [--port 8080] [--print-config]              run the documented example
  sluice version                                          print the version

Run "sluice COMMAND -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(ctx, args[1:], stderr)
	case "kube":
		err = cmdKube(ctx, args[1:], stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "demo":
		err = cmdDemo(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "sluice", versionString())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "sluice:", err)
		return 1
	}
	return 0
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// defaultAdminAddr is loopback: the admin listener has no authentication and serves the
// configuration, so reaching it from elsewhere must be a deliberate choice.
const defaultAdminAddr = "127.0.0.1:9901"

// serveFlags are the flags of every command that serves traffic.
type serveFlags struct {
	bindAddress  string
	adminAddr    string
	adminPprof   bool
	logLevel     string
	accessLog    bool
	drainTimeout time.Duration
	limits       dataplane.Limits
	http1Server  string
}

func (s *serveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.bindAddress, "bind-address", "0.0.0.0", "address listener ports are bound on")
	fs.StringVar(&s.adminAddr, "admin-addr", defaultAdminAddr, "admin listener (/healthz, /readyz, /metrics, /config, /debug/pprof/ with --admin-pprof); empty disables it")
	fs.BoolVar(&s.adminPprof, "admin-pprof", false, "serve the Go profiler on the admin listener under /debug/pprof/")
	fs.StringVar(&s.logLevel, "log-level", "info", "log level: debug, info, warn or error (debug logs every external processing message)")
	fs.BoolVar(&s.accessLog, "access-log", true, "log one JSON line per request to stdout")
	fs.DurationVar(&s.drainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM, how long requests in flight may take to finish")
	fs.IntVar(&s.limits.MaxHeaderBytes, "max-header-bytes", 60<<10, "largest request line and headers; larger requests get 431")
	fs.DurationVar(&s.limits.ReadHeaderTimeout, "read-header-timeout", 10*time.Second, "how long a client may take to send its request headers")
	fs.DurationVar(&s.limits.IdleTimeout, "idle-timeout", 60*time.Second, "idle keep-alive connections close after this long")
	fs.IntVar(&s.limits.MaxConcurrentStreams, "max-concurrent-streams", 100, "concurrent HTTP/2 streams per client connection")
	fs.StringVar(&s.http1Server, "http1-server", "", "server of plain-HTTP ports: lean (internal/h1server, the default) or net/http; empty takes $SLUICE_HTTP1_SERVER")
}

func (s *serveFlags) options(stdout, stderr io.Writer) (app.Options, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s.logLevel)); err != nil {
		return app.Options{}, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", s.logLevel)
	}
	if !dataplane.ValidHTTP1Server(s.http1Server) {
		return app.Options{}, fmt.Errorf("--http1-server: %q is not one of %s, %s", s.http1Server, dataplane.HTTP1NetHTTP, dataplane.HTTP1Lean)
	}
	o := app.Options{
		BindAddress:  s.bindAddress,
		AdminAddr:    s.adminAddr,
		AdminPprof:   s.adminPprof,
		DrainTimeout: s.drainTimeout,
		Limits:       s.limits,
		HTTP1Server:  s.http1Server,
		Logger:       slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})),
	}
	if s.accessLog {
		o.AccessLog = slog.New(slog.NewJSONHandler(stdout, nil))
	}
	return o, nil
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("sluice run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var configs multiFlag
	fs.Var(&configs, "config", "YAML file or directory of configuration (repeatable); edits are applied without a restart")
	var sf serveFlags
	sf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(configs) == 0 {
		return errors.New("run: --config is required (a YAML file or a directory)")
	}
	o, err := sf.options(os.Stdout, stderr)
	if err != nil {
		return err
	}
	o.ConfigPaths = configs
	return app.Run(ctx, o)
}

func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "(devel)"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "(devel) " + rev
}

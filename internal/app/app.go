// Package app wires a whole gateway process: the configuration source, the translator, the
// data plane with its external processors, and the admin listener. `sluice run` and
// `sluice demo` both run it.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sluice-gateway/sluice/internal/admin"
	"github.com/sluice-gateway/sluice/internal/dataplane"
	"github.com/sluice-gateway/sluice/internal/extproc"
	"github.com/sluice-gateway/sluice/internal/provider/file"
	"github.com/sluice-gateway/sluice/internal/translate"
)

// Options configure a gateway process.
type Options struct {
	// ConfigPaths are YAML files or directories, watched for changes. Ignored when
	// Resources is set.
	ConfigPaths []string
	// Resources, when set, is a fixed configuration (the demo).
	Resources *translate.Resources
	// BindAddress is where listener ports are bound. Default 0.0.0.0.
	BindAddress string
	// AdminAddr is the admin listener's address; "" disables it.
	AdminAddr string
	// AdminPprof serves the Go profiler on the admin listener (see admin.Options).
	AdminPprof bool
	// DrainTimeout bounds how long shutdown waits for requests in flight. Default 30s.
	DrainTimeout time.Duration
	// Limits protect the listeners.
	Limits dataplane.Limits
	// HTTP1Server chooses the server of plain-HTTP ports (dataplane.Options.HTTP1Server).
	HTTP1Server string
	// Logger receives operational logs; AccessLog, when set, one line per request.
	Logger    *slog.Logger
	AccessLog *slog.Logger
	// Ready, when set, is called once the first configuration serves, with the gateway's
	// bound addresses by port.
	Ready func(addrs map[int32]net.Addr, adminAddr net.Addr)

	// Source, when set, supplies the configuration instead of ConfigPaths or Resources
	// (Kubernetes mode).
	Source Source
	// Translate tunes the translator. File mode serves every Gateway whatever its class.
	Translate translate.Options
	// PartialConfig serves the valid part of a configuration that has problems, as the
	// Gateway API expects of a controller (Kubernetes mode). Without it (file mode) a
	// configuration with any problem is rejected whole and the last good one keeps serving.
	PartialConfig bool
	// OnResult, when set, receives every translation result, accepted or not (status
	// writers). It is called from the source's goroutine and must not block for long.
	OnResult func(*translate.Result)
}

// Source supplies configurations.
type Source interface {
	// Run blocks until ctx is done, calling update from one goroutine with the first state
	// of the configuration and then with every change. err reports a state that could not
	// be read; the last good configuration then keeps serving.
	Run(ctx context.Context, update func(res *translate.Resources, err error)) error
}

// FileSource reads and watches YAML files and directories.
type FileSource []string

// Run implements Source.
func (f FileSource) Run(ctx context.Context, update func(*translate.Resources, error)) error {
	return file.Watch(ctx, f, update)
}

// StaticSource is a fixed configuration.
type StaticSource struct{ Resources *translate.Resources }

// Run implements Source.
func (s StaticSource) Run(ctx context.Context, update func(*translate.Resources, error)) error {
	update(s.Resources, nil)
	<-ctx.Done()
	return nil
}

// Run serves until ctx is done, then drains and returns. It fails at once when the first
// configuration is invalid or a port cannot be bound.
func Run(ctx context.Context, o Options) error {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 30 * time.Second
	}
	log := o.Logger
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	pool := extproc.NewPool(extproc.PoolOptions{Logger: log, Metrics: extproc.NewMetrics(reg)})
	defer pool.Close()
	gw := dataplane.New(dataplane.Options{
		BindAddress: o.BindAddress,
		Logger:      log,
		AccessLog:   o.AccessLog,
		Metrics:     dataplane.NewMetrics(reg),
		BuildFilter: pool.Build,
		Limits:      o.Limits,
		HTTP1Server: o.HTTP1Server,
	})

	adm := admin.New(reg, func() any {
		if s := gw.Snapshot(); s != nil {
			return s.Extra
		}
		return nil
	}, admin.Options{Pprof: o.AdminPprof})
	var adminAddr net.Addr
	var adminSrv *http.Server
	if o.AdminAddr != "" {
		ln, err := net.Listen("tcp", o.AdminAddr)
		if err != nil {
			return fmt.Errorf("admin listener: %w", err)
		}
		adminAddr = ln.Addr()
		adminSrv = &http.Server{Handler: adm, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := adminSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin listener stopped", "error", err)
			}
		}()
		defer adminSrv.Close()
	}

	if o.Translate.ControllerName == "" && !o.Translate.AllGatewayClasses && len(o.Translate.Gateways) == 0 && o.Source == nil {
		o.Translate.AllGatewayClasses = true
	}
	apply := func(res *translate.Resources, loadErr error) error {
		if loadErr != nil {
			return loadErr
		}
		result := translate.Translate(res, o.Translate)
		if o.OnResult != nil {
			o.OnResult(result)
		}
		if len(result.Problems) > 0 {
			errs := make([]error, len(result.Problems))
			for i, p := range result.Problems {
				errs[i] = p
			}
			if !o.PartialConfig {
				return errors.Join(errs...)
			}
			log.Warn("configuration has problems; serving its valid part", "problems", strings.Split(errors.Join(errs...).Error(), "\n"))
		}
		if err := gw.Apply(result.Config, result); err != nil {
			return err
		}
		// Gateways keep the pool addresses they are served on from one change to the next.
		o.Translate.StickyAddresses = result.Addresses
		return nil
	}

	src := o.Source
	switch {
	case src != nil:
	case o.Resources != nil:
		src = StaticSource{Resources: o.Resources}
	default:
		src = FileSource(o.ConfigPaths)
	}
	srcCtx, stopSource := context.WithCancel(ctx)
	defer stopSource()
	first := make(chan error, 1)
	srcDone := make(chan error, 1)
	started := false
	go func() {
		srcDone <- src.Run(srcCtx, func(res *translate.Resources, err error) {
			err = apply(res, err)
			if !started {
				started = true
				first <- err
				return
			}
			if err != nil {
				log.Error("configuration change rejected; the last good configuration keeps serving", "errors", strings.Split(err.Error(), "\n"))
				return
			}
			log.Info("configuration reloaded", "ports", portList(gw.Sockets()))
		})
	}()

	select {
	case err := <-first:
		if err != nil {
			stopSource()
			<-srcDone
			shutdown(gw, o.DrainTimeout)
			return fmt.Errorf("invalid configuration:\n%w", indent(err))
		}
	case err := <-srcDone:
		shutdown(gw, o.DrainTimeout)
		if err == nil {
			err = errors.New("the configuration source stopped before supplying a configuration")
		}
		return fmt.Errorf("reading the configuration: %w", err)
	}
	adm.SetReady(true)
	log.Info("serving", "ports", portList(gw.Sockets()), "admin", o.AdminAddr)
	if o.Ready != nil {
		o.Ready(gw.Addrs(), adminAddr)
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-srcDone:
		// The source gave up (it already retried what it could): keep serving the last
		// configuration until asked to stop, as a gateway must.
		if err != nil {
			log.Error("the configuration source stopped; the last configuration keeps serving", "error", err)
		}
		srcDone <- nil
		<-ctx.Done()
	}
	log.Info("shutting down: draining requests in flight", "timeout", o.DrainTimeout.String())
	adm.SetReady(false)
	err = shutdown(gw, o.DrainTimeout)
	stopSource()
	if serr := <-srcDone; serr != nil && !errors.Is(serr, context.Canceled) {
		err = errors.Join(err, fmt.Errorf("watching the configuration: %w", serr))
	}
	return err
}

func shutdown(gw *dataplane.Gateway, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return gw.Shutdown(ctx)
}

func portList(addrs []net.Addr) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.String())
	}
	sort.Strings(out)
	return out
}

// indent prefixes every line of err with two spaces, for multi-error messages.
func indent(err error) error {
	return errors.New("  " + strings.ReplaceAll(err.Error(), "\n", "\n  "))
}

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
	// DrainTimeout bounds how long shutdown waits for requests in flight. Default 30s.
	DrainTimeout time.Duration
	// Limits protect the listeners.
	Limits dataplane.Limits
	// Logger receives operational logs; AccessLog, when set, one line per request.
	Logger    *slog.Logger
	AccessLog *slog.Logger
	// Ready, when set, is called once the first configuration serves, with the gateway's
	// bound addresses by port.
	Ready func(addrs map[int32]net.Addr, adminAddr net.Addr)
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
	})

	adm := admin.New(reg, func() any {
		if s := gw.Snapshot(); s != nil {
			return s.Extra
		}
		return nil
	})
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

	apply := func(res *translate.Resources, loadErr error) error {
		if loadErr != nil {
			return loadErr
		}
		result := translate.Translate(res, translate.Options{AllGatewayClasses: true})
		if len(result.Problems) > 0 {
			errs := make([]error, len(result.Problems))
			for i, p := range result.Problems {
				errs[i] = p
			}
			return errors.Join(errs...)
		}
		return gw.Apply(result.Config, result)
	}

	var first error
	if o.Resources != nil {
		first = apply(o.Resources, nil)
	} else {
		first = apply(file.Load(o.ConfigPaths...))
	}
	if first != nil {
		shutdown(gw, o.DrainTimeout)
		return fmt.Errorf("invalid configuration:\n%w", indent(first))
	}
	adm.SetReady(true)
	log.Info("serving", "ports", portList(gw.Addrs()), "admin", o.AdminAddr)
	if o.Ready != nil {
		o.Ready(gw.Addrs(), adminAddr)
	}

	watchDone := make(chan error, 1)
	if o.Resources == nil {
		go func() {
			watchDone <- file.Watch(ctx, o.ConfigPaths, func(res *translate.Resources, err error) {
				if err := apply(res, err); err != nil {
					log.Error("configuration change rejected; the last good configuration keeps serving", "errors", strings.Split(err.Error(), "\n"))
					return
				}
				log.Info("configuration reloaded", "ports", portList(gw.Addrs()))
			})
		}()
	} else {
		watchDone <- nil
	}

	<-ctx.Done()
	log.Info("shutting down: draining requests in flight", "timeout", o.DrainTimeout.String())
	adm.SetReady(false)
	err := shutdown(gw, o.DrainTimeout)
	if werr := <-watchDone; werr != nil && !errors.Is(werr, context.Canceled) {
		err = errors.Join(err, fmt.Errorf("watching the configuration: %w", werr))
	}
	return err
}

func shutdown(gw *dataplane.Gateway, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return gw.Shutdown(ctx)
}

func portList(addrs map[int32]net.Addr) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.String())
	}
	return out
}

// indent prefixes every line of err with two spaces, for multi-error messages.
func indent(err error) error {
	return errors.New("  " + strings.ReplaceAll(err.Error(), "\n", "\n  "))
}

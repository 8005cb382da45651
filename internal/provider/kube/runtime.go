package kube

import (
	"context"
	"fmt"
	"log/slog"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// RuntimeOptions configure everything `sluice kube` runs beside the data plane.
type RuntimeOptions struct {
	// Namespace, when set, limits namespaced kinds to one namespace.
	Namespace string
	// ControllerName is the GatewayClass controllerName served.
	ControllerName string
	// Addresses are reported in Gateway status.addresses.
	Addresses []string
	// Gateways, when not empty, are the only Gateways served and reported on (a
	// per-Gateway deployment); see translate.Options.Gateways.
	Gateways []types.NamespacedName
	// LeaderElect makes the replicas elect the one that writes status. Without it this
	// process writes status unconditionally: right for a single replica only.
	LeaderElect bool
	// Leader configures the election when LeaderElect is set.
	Leader LeaderOptions
	// Logger receives operational logs. Default slog.Default().
	Logger *slog.Logger
}

// Runtime is the Kubernetes side of a `sluice kube` process: Provider is the
// configuration source for app.Run, Status.OnResult its result hook, and RunStatus
// writes status (on the leader).
type Runtime struct {
	Provider *Provider
	Status   *StatusWriter
	cfg      *rest.Config
	opts     RuntimeOptions
}

// NewRuntime builds the provider and the status writer for the API server of cfg.
func NewRuntime(cfg *rest.Config, o RuntimeOptions) (*Runtime, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	// The provider reports status-only changes to the writer, which is made after it.
	var w *StatusWriter
	p, err := New(cfg, Options{Namespace: o.Namespace, Scheme: scheme, Logger: o.Logger,
		OnStatusChange: func() { w.Recheck() }})
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("creating the API client: %w", err)
	}
	w = NewStatusWriter(c, p.Reader(), StatusOptions{
		ControllerName: o.ControllerName,
		Addresses:      o.Addresses,
		Gateways:       o.Gateways,
		Logger:         o.Logger,
	})
	if o.Leader.Logger == nil {
		o.Leader.Logger = o.Logger
	}
	return &Runtime{Provider: p, Status: w, cfg: cfg, opts: o}, nil
}

// RunStatus writes status until ctx is done: while this replica leads when
// RuntimeOptions.LeaderElect is set, always otherwise.
func (r *Runtime) RunStatus(ctx context.Context) error {
	if !r.opts.LeaderElect {
		return r.Status.Run(ctx)
	}
	return RunLeaderElection(ctx, r.cfg, r.opts.Leader, func(ctx context.Context) {
		_ = r.Status.Run(ctx) // returns nil when ctx is done, which is the only way out
	})
}

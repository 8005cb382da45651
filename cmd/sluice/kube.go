package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sluice-gateway/sluice/internal/app"
	"github.com/sluice-gateway/sluice/internal/provider/kube"
	"github.com/sluice-gateway/sluice/internal/translate"
)

// serviceAccountNamespace is where Kubernetes mounts the pod's namespace.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// kubeFlags are the flags of `sluice kube` beside the serve flags.
type kubeFlags struct {
	kubeconfig     string
	controllerName string
	namespace      string
	gatewayAddress multiFlag
	leaderElect    bool
	leaderNS       string
	leaderID       string
	leaderLease    time.Duration
	leaderRenew    time.Duration
	leaderRetry    time.Duration
}

func (k *kubeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file; default: the in-cluster configuration, then $KUBECONFIG, then ~/.kube/config")
	fs.StringVar(&k.controllerName, "gateway-class-controller", translate.DefaultControllerName, "GatewayClass spec.controllerName whose Gateways this process serves")
	fs.StringVar(&k.namespace, "namespace", "", "watch namespaced objects in this namespace only (default: all namespaces)")
	fs.Var(&k.gatewayAddress, "gateway-address", "address reported in Gateway status.addresses (repeatable; default $POD_IP)")
	fs.BoolVar(&k.leaderElect, "leader-elect", true, "elect one replica (Lease) to write status; disable only for a single replica")
	fs.StringVar(&k.leaderNS, "leader-election-namespace", "", "namespace of the leader election Lease (default: $POD_NAMESPACE, the pod's namespace, --namespace, then default)")
	fs.StringVar(&k.leaderID, "leader-election-id", "sluice-status-writer", "name of the leader election Lease")
	fs.DurationVar(&k.leaderLease, "leader-election-lease-duration", 15*time.Second, "how long followers wait before taking over a Lease the leader stopped renewing (a leader that dies without releasing it)")
	fs.DurationVar(&k.leaderRenew, "leader-election-renew-deadline", 10*time.Second, "how long the leader keeps retrying a renewal before giving up leadership; below the lease duration")
	fs.DurationVar(&k.leaderRetry, "leader-election-retry-period", 2*time.Second, "pause between attempts to acquire or renew the Lease")
}

func cmdKube(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("sluice kube", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var kf kubeFlags
	kf.register(fs)
	var sf serveFlags
	sf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("kube: unexpected arguments %q", fs.Args())
	}
	o, err := sf.options(os.Stdout, stderr)
	if err != nil {
		return err
	}
	// client-go and controller-runtime log through klog and logr: send both to ours.
	klog.SetSlogLogger(o.Logger)
	ctrllog.SetLogger(logr.FromSlogHandler(o.Logger.Handler()))

	cfg, err := restConfig(kf.kubeconfig)
	if err != nil {
		return err
	}
	addrs := []string(kf.gatewayAddress)
	if len(addrs) == 0 && os.Getenv("POD_IP") != "" {
		addrs = []string{os.Getenv("POD_IP")}
	}
	rt, err := kube.NewRuntime(cfg, kube.RuntimeOptions{
		Namespace:      kf.namespace,
		ControllerName: kf.controllerName,
		Addresses:      addrs,
		LeaderElect:    kf.leaderElect,
		Leader: kube.LeaderOptions{Namespace: leaderNamespace(kf), Name: kf.leaderID,
			LeaseDuration: kf.leaderLease, RenewDeadline: kf.leaderRenew, RetryPeriod: kf.leaderRetry},
		Logger: o.Logger,
	})
	if err != nil {
		return err
	}
	o.Source = rt.Provider
	o.PartialConfig = true
	o.Translate = translate.Options{ControllerName: kf.controllerName}
	o.OnResult = rt.Status.OnResult

	statusCtx, stopStatus := context.WithCancel(ctx)
	defer stopStatus()
	statusDone := make(chan error, 1)
	go func() { statusDone <- rt.RunStatus(statusCtx) }()
	err = app.Run(ctx, o)
	stopStatus()
	if serr := <-statusDone; serr != nil {
		err = errors.Join(err, fmt.Errorf("status writer: %w", serr))
	}
	return err
}

// restConfig loads the API server's address and credentials: from path when given,
// else from the in-cluster service account, else from $KUBECONFIG or ~/.kube/config.
func restConfig(path string) (*rest.Config, error) {
	if path == "" {
		if cfg, err := rest.InClusterConfig(); err == nil {
			return cfg, nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kube: no API server configuration (not in a cluster, and no usable kubeconfig): %w", err)
	}
	return cfg, nil
}

// leaderNamespace picks the namespace of the leader election Lease: the flag, else the
// pod's own namespace (where the manifests' Role allows Leases), else --namespace, else
// default.
func leaderNamespace(k kubeFlags) string {
	if k.leaderNS != "" {
		return k.leaderNS
	}
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile(serviceAccountNamespace); err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b))
	}
	if k.namespace != "" {
		return k.namespace
	}
	return "default"
}

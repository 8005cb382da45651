package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
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

// defaultLeaderID is the default name of the leader election Lease.
const defaultLeaderID = "sluice-status-writer"

// kubeFlags are the flags of `sluice kube` beside the serve flags.
type kubeFlags struct {
	kubeconfig     string
	controllerName string
	namespace      string
	gatewayAddress multiFlag
	addressPool    multiFlag
	gateways       multiFlag
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
	fs.Var(&k.addressPool, "address-pool", "IP addresses to give each Gateway one of its own, bound by its listeners and reported in its status (repeatable; comma-separated addresses, ranges a-b and prefixes; they must be assigned to the host). Default: every Gateway on --bind-address")
	fs.Var(&k.gateways, "gateway", "serve only this Gateway, as namespace/name (repeatable; a bare name is in --namespace): a per-Gateway deployment. Default: every Gateway of the class")
	fs.BoolVar(&k.leaderElect, "leader-elect", true, "elect one replica (Lease) to write status; disable only for a single replica")
	fs.StringVar(&k.leaderNS, "leader-election-namespace", "", "namespace of the leader election Lease (default: $POD_NAMESPACE, the pod's namespace, --namespace, then default)")
	fs.StringVar(&k.leaderID, "leader-election-id", defaultLeaderID, "name of the leader election Lease (with --gateway, the default gets a suffix naming the selection, so that each per-Gateway deployment elects its own writer)")
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
	gateways, err := parseGateways(kf.gateways, kf.namespace)
	if err != nil {
		return err
	}
	pool, err := parseAddressPool(kf.addressPool)
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
		Gateways:       gateways,
		LeaderElect:    kf.leaderElect,
		Leader: kube.LeaderOptions{Namespace: leaderNamespace(kf), Name: leaderID(kf.leaderID, gateways),
			LeaseDuration: kf.leaderLease, RenewDeadline: kf.leaderRenew, RetryPeriod: kf.leaderRetry},
		Logger: o.Logger,
	})
	if err != nil {
		return err
	}
	o.Source = rt.Provider
	o.PartialConfig = true
	o.Translate = translate.Options{ControllerName: kf.controllerName, Gateways: gateways, AddressPool: pool}
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

// parseGateways reads the --gateway values: namespace/name, or a bare name in
// namespace (the --namespace flag), which must then be set.
func parseGateways(values []string, namespace string) ([]types.NamespacedName, error) {
	var out []types.NamespacedName
	for _, v := range values {
		ns, name, ok := strings.Cut(v, "/")
		if !ok {
			ns, name = namespace, v
		}
		if ns == "" || name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("kube: --gateway %q: expected namespace/name (or a bare name with --namespace)", v)
		}
		if namespace != "" && ns != namespace {
			return nil, fmt.Errorf("kube: --gateway %q: outside --namespace %q, which is all this process watches", v, namespace)
		}
		out = append(out, types.NamespacedName{Namespace: ns, Name: name})
	}
	return out, nil
}

// leaderID is the Lease name: id, or with a Gateway selection and the default id, the
// default suffixed with a digest of the selection, so that per-Gateway deployments in
// one namespace do not share a status writer (each writes only its Gateways' status).
func leaderID(id string, gateways []types.NamespacedName) string {
	if id != defaultLeaderID || len(gateways) == 0 {
		return id
	}
	keys := make([]string, len(gateways))
	for i, g := range gateways {
		keys[i] = g.String()
	}
	slices.Sort(keys)
	sum := sha256.Sum256([]byte(strings.Join(slices.Compact(keys), ",")))
	return fmt.Sprintf("%s-%x", id, sum[:5])
}

//go:build conformance

// Package conformance runs the official Gateway API conformance suite
// (sigs.k8s.io/gateway-api/conformance) against `sluice kube` on this machine: a real
// etcd, kube-apiserver and kube-controller-manager (built by hack/testenv/build.sh), a
// pod runner in place of the kubelet, and Sluice bound on the pod bridge. It lives in a
// module of its own so that the root module does not depend on the suite, and behind
// the `conformance` build tag because it needs root, `ip` and the cached binaries.
//
// Run it with hack/conformance.sh (or `make conformance`); docs/conformance.md explains
// the pieces and the SLUICE_CONFORMANCE_* environment variables.
package conformance

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/apis/v1alpha2"
	"sigs.k8s.io/gateway-api/apis/v1alpha3"
	xv1alpha1 "sigs.k8s.io/gateway-api/apisx/v1alpha1"
	"sigs.k8s.io/gateway-api/conformance"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/tests"
	"sigs.k8s.io/gateway-api/conformance/utils/config"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"

	"github.com/sluice-gateway/sluice/test/conformance/podrunner"
)

const (
	testenvVersion = "v1.37.2"
	controllerName = "gateway.sluice.dev/controller"
	// netPrefix names every network object the harness creates (bridge, veths,
	// namespaces), so that all of them can be found and removed.
	netPrefix = "slc-"
	// podSubnet is the pods' private /24; the host (and Sluice) is .1 on the bridge.
	podSubnet = "10.214.0.0/24"
	nodeName  = "sluice-conformance-node"
	// startupTimeout bounds everything before the suite starts (builds included).
	startupTimeout = 10 * time.Minute
)

// controllers are the kube-controller-manager controllers the suite's manifests need:
// Deployments become ReplicaSets and Pods, EndpointSlices follow pod readiness, and
// namespaces, garbage and service accounts are handled as in a cluster.
var controllers = []string{
	"deployment-controller", "replicaset-controller", "endpointslice-controller",
	"endpointslice-mirroring-controller", "namespace-controller", "garbage-collector-controller",
	"pod-garbage-collector-controller", "serviceaccount-controller",
}

// coreFeatures are the core of the GATEWAY-HTTP and GATEWAY-GRPC profiles
// (SLUICE_CONFORMANCE_FEATURES=core).
// By default the features tested are those Sluice writes in the GatewayClass's
// status.supportedFeatures.
var coreFeatures = []features.FeatureName{features.SupportGateway, features.SupportHTTPRoute, features.SupportGRPCRoute, features.SupportReferenceGrant}

// TestConformance starts the cluster pieces and Sluice, then runs the suite.
func TestConformance(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the pod runner creates network namespaces and Sluice binds ports 80 and 443")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (`ip`) for the pods' network namespaces")
	}
	assets := assetsDir()
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			t.Fatalf("no %s in %s: run hack/testenv/build.sh (or set KUBEBUILDER_ASSETS)", b, assets)
		}
	}
	ctrllog.SetLogger(logr.Discard())
	klog.SetLogger(logr.Discard())

	artifacts := os.Getenv("SLUICE_CONFORMANCE_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("logs of the harness, Sluice and the control plane go to %s", artifacts)

	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}

	// Build while nothing else runs yet; both are needed before the pods start.
	bins := t.TempDir()
	sluiceBin := filepath.Join(bins, "sluice")
	echoBin := filepath.Join(bins, "echo-basic")
	if b := os.Getenv("SLUICE_CONFORMANCE_SLUICE_BIN"); b != "" {
		// A prebuilt binary: for trying a change in another tree without touching this one.
		sluiceBin = b
		t.Logf("using the prebuilt sluice %s", b)
	} else {
		goBuild(ctx, t, root, sluiceBin, "./cmd/sluice")
	}
	goBuild(ctx, t, ".", echoBin, "sigs.k8s.io/gateway-api/conformance/echo-basic")

	cfg, kubeconfig := startAPIServer(t, assets, root)
	startProcess(t, artifacts, "kube-controller-manager", filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig="+kubeconfig, "--secure-port=0", "--leader-elect=false",
		"--use-service-account-credentials=false", "--controllers="+strings.Join(controllers, ","))

	cs, err := clientset.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	runnerLog := newLogFile(t, filepath.Join(artifacts, "podrunner.log"))
	runner, err := podrunner.Start(ctx, podrunner.Config{
		Client:   cs,
		NodeName: nodeName,
		Prefix:   netPrefix,
		Subnet:   netip.MustParsePrefix(podSubnet),
		Dir:      filepath.Join(t.TempDir(), "pods"),
		Logf:     runnerLog.Logf,
		Images: map[string]podrunner.Program{
			// Both tags the manifests use (v1.5.1, v1.6.0-dev.3) run the suite's own source.
			"registry.k8s.io/gateway-api/echo-basic": {Path: echoBin, ReadyPort: 3000, ReadyPortEnv: "HTTP_PORT"},
			// CoreDNS only answers the UDPRoute tests, which Sluice does not claim. The
			// suite waits for every pod of its namespaces to be Ready, though, so a
			// stand-in that does nothing keeps the coredns pod from blocking setup.
			"registry.k8s.io/coredns/coredns": {Path: "/bin/sleep", Args: []string{"infinity"}},
		},
	})
	if err != nil {
		t.Fatalf("starting the pod runner: %v", err)
	}
	t.Cleanup(func() {
		if err := runner.Close(); err != nil {
			t.Errorf("stopping the pod runner: %v", err)
		}
	})
	gwAddr := runner.HostIP().String()
	// Each Gateway gets an address of its own from a pool of host addresses on the
	// bridge (.2 up), as with a load balancer address per Gateway: the suite's Gateways
	// use the same ports, often without hostnames.
	poolSize := 32
	if n, err := strconv.Atoi(os.Getenv("SLUICE_CONFORMANCE_ADDRESSES")); err == nil {
		poolSize = n
	}
	if poolSize < 1 || poolSize > 62 {
		t.Fatalf("SLUICE_CONFORMANCE_ADDRESSES=%d: expected 1 to 62 addresses", poolSize)
	}
	var pool []string
	for a, i := runner.HostIP().Next(), 0; i < poolSize; a, i = a.Next(), i+1 {
		if err := runner.AddHostAddress(ctx, a); err != nil {
			t.Fatal(err)
		}
		pool = append(pool, a.String())
	}
	t.Logf("address pool of %d host addresses on the pod bridge: %s-%s", len(pool), pool[0], pool[len(pool)-1])

	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	args := []string{"kube", "--kubeconfig", kubeconfig,
		"--bind-address", gwAddr, "--gateway-address", gwAddr, "--address-pool", strings.Join(pool, ","), "--admin-addr", admin,
		"--leader-elect=false", "--log-level", envOr("SLUICE_CONFORMANCE_LOG_LEVEL", "debug"),
		"--access-log=" + strconv.FormatBool(os.Getenv("SLUICE_CONFORMANCE_ACCESS_LOG") == "1"), "--drain-timeout", "1s"}
	args = append(args, strings.Fields(os.Getenv("SLUICE_CONFORMANCE_SLUICE_ARGS"))...)
	sluice := startProcess(t, artifacts, "sluice", append([]string{sluiceBin}, args...)...)
	waitFor(ctx, t, time.Minute, "sluice /readyz", func() (bool, string) {
		if sluice.exited() {
			return false, "sluice exited:\n" + sluice.tail(4000)
		}
		code, err := getStatus("http://" + admin + "/readyz")
		return code == http.StatusOK, fmt.Sprintf("status %d, err %v", code, err)
	})

	c, err := suiteClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	className := envOr("SLUICE_CONFORMANCE_GATEWAY_CLASS", "sluice")
	gwc := &gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: className},
		Spec: gwv1.GatewayClassSpec{ControllerName: controllerName}}
	if err := c.Create(ctx, gwc); err != nil {
		t.Fatalf("creating GatewayClass %s: %v", className, err)
	}
	waitFor(ctx, t, time.Minute, "GatewayClass "+className+" Accepted", func() (bool, string) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(gwc), gwc); err != nil {
			return false, err.Error()
		}
		cond := meta.FindStatusCondition(gwc.Status.Conditions, string(gwv1.GatewayClassConditionStatusAccepted))
		ok := cond != nil && cond.Status == metav1.ConditionTrue && len(gwc.Status.SupportedFeatures) > 0
		return ok, fmt.Sprintf("%+v", gwc.Status)
	})

	opts := suiteOptions(t, c, cs, cfg, className, artifacts, gwc.Status.SupportedFeatures)
	// For GatewayStaticAddresses: the last pool address is free for a Gateway to ask for
	// (addresses are handed out lowest first); a documentation address is never Sluice's.
	ipType := gwv1.IPAddressType
	opts.UsableNetworkAddresses = []gwv1.GatewaySpecAddress{{Type: &ipType, Value: pool[len(pool)-1]}}
	opts.UnusableNetworkAddresses = []gwv1.GatewaySpecAddress{{Type: &ipType, Value: "192.0.2.1"}}
	conformance.RunConformanceWithOptions(t, opts)
}

// suiteOptions builds the suite's options from the SLUICE_CONFORMANCE_* variables.
func suiteOptions(t *testing.T, c client.Client, cs clientset.Interface, cfg *rest.Config, className, artifacts string, claimed []gwv1.SupportedFeature) suite.ConformanceOptions {
	timeouts := config.DefaultTimeoutConfig()
	if os.Getenv("SLUICE_CONFORMANCE_FAST") == "1" {
		// For exploration: a failing test gives up after seconds, not a minute.
		config.ParseTimeoutOverrides(&timeouts, "HTTPRouteMustHaveCondition:15;RouteMustHaveParents:15;"+
			"MaxTimeToConsistency:10;GatewayMustHaveCondition:30;GatewayStatusMustHaveListeners:15;"+
			"GatewayListenersMustHaveConditions:15;LatestObservedGenerationSet:15;DefaultTestTimeout:20;"+
			"HTTPRouteMustNotHaveParents:15;NamespacesMustBeReady:120")
	}
	config.ParseTimeoutOverrides(&timeouts, os.Getenv("SLUICE_CONFORMANCE_TIMEOUTS"))

	var supported []features.FeatureName
	switch f := os.Getenv("SLUICE_CONFORMANCE_FEATURES"); f {
	case "", "claimed":
		// What Sluice claims in the GatewayClass's status.supportedFeatures: the suite
		// would read them itself, but not when one test is picked (RunTest).
		for _, f := range claimed {
			supported = append(supported, features.FeatureName(f.Name))
		}
		if len(supported) == 0 {
			t.Fatalf("GatewayClass %s lists no supportedFeatures", className)
		}
		t.Logf("features claimed by Sluice: %v", supported)
	case "core":
		supported = coreFeatures
	case "extended":
		// Every Gateway and HTTPRoute feature, to see which extended ones already work.
		supported = append(supported, coreFeatures...)
		supported = append(supported, sets.List(features.SetsToNamesSet(features.GatewayExtendedFeatures, features.HTTPRouteExtendedFeatures))...)
	default:
		for _, name := range splitList(f) {
			supported = append(supported, features.FeatureName(name))
		}
	}

	report := os.Getenv("SLUICE_CONFORMANCE_REPORT")
	if report == "" {
		report = filepath.Join(artifacts, "conformance-report.yaml")
	}
	opts := suite.ConformanceOptions{
		ConfigurableOptions: suite.ConfigurableOptions{
			GatewayClassName:     className,
			ReportOutputPath:     report,
			CleanupBaseResources: true,
			CleanupTestResources: true,
			SupportedFeatures:    supported,
			TimeoutConfig:        timeouts,
			SkipTests:            splitList(os.Getenv("SLUICE_CONFORMANCE_SKIP")),
			// One test at a time unless asked: the suite's parallel tests share namespaces,
			// and ListenerSetReferenceGrant's ReferenceGrant allows the very reference that
			// GatewaySecretInvalidReferenceGrant expects refused. Serial costs ~5 s here.
			DisableParallelTests: os.Getenv("SLUICE_CONFORMANCE_PARALLEL") != "1",
			Debug:                os.Getenv("SLUICE_CONFORMANCE_DEBUG") == "1",
			AllowCRDsMismatch:    os.Getenv("SLUICE_CONFORMANCE_ALLOW_CRDS_MISMATCH") == "1",
			FailFast:             os.Getenv("SLUICE_CONFORMANCE_FAIL_FAST") == "1",
			Mode:                 "default",
			ConformanceProfiles:  []suite.ConformanceProfileName{suite.GatewayHTTPConformanceProfileName, suite.GatewayGRPCConformanceProfileName},
			Implementation: confv1.Implementation{
				Organization: "sluice-gateway",
				Project:      "sluice",
				URL:          "https://github.com/sluice-gateway/sluice",
				Version:      envOr("SLUICE_VERSION", "dev"),
				Contact:      []string{"https://github.com/sluice-gateway/sluice/issues"},
			},
		},
		Client:     c,
		Clientset:  cs,
		RestConfig: cfg,
		ManifestFS: []fs.FS{&conformance.Manifests},
	}
	// A single name uses the suite's own RunTest; a list skips every other test.
	if run := splitList(os.Getenv("SLUICE_CONFORMANCE_RUN")); len(run) == 1 {
		opts.RunTest = run[0]
	} else if len(run) > 1 {
		want := sets.New(run...)
		known := sets.New[string]()
		for _, ct := range tests.ConformanceTests {
			known.Insert(ct.ShortName)
			if !want.Has(ct.ShortName) {
				opts.SkipTests = append(opts.SkipTests, ct.ShortName)
			}
		}
		if unknown := want.Difference(known); unknown.Len() > 0 {
			t.Fatalf("SLUICE_CONFORMANCE_RUN names unknown tests: %v", sets.List(unknown))
		}
	}
	return opts
}

// suiteClient is a controller-runtime client with the schemes the suite uses, as its
// DefaultOptions builds it (without reading the suite's command-line flags).
func suiteClient(cfg *rest.Config) (client.Client, error) {
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil, fmt.Errorf("suite client: %w", err)
	}
	for _, install := range []func(*runtime.Scheme) error{v1alpha3.Install, v1alpha2.Install, xv1alpha1.Install, gwv1.Install, apiextensionsv1.AddToScheme} {
		if err := install(c.Scheme()); err != nil {
			return nil, fmt.Errorf("suite client scheme: %w", err)
		}
	}
	return c, nil
}

// assetsDir is where hack/testenv/build.sh caches the control plane binaries.
func assetsDir() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	if d := os.Getenv("SLUICE_TESTENV_DIR"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "sluice-testenv", testenvVersion)
}

func goBuild(ctx context.Context, t *testing.T, dir, out, pkg string) {
	t.Helper()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, b)
	}
	t.Logf("built %s in %s", pkg, time.Since(start).Round(time.Second))
}

// startAPIServer starts etcd and kube-apiserver with the Gateway API CRDs of the
// channel SLUICE_CONFORMANCE_CHANNEL (standard by default; it covers GATEWAY-HTTP core)
// and Sluice's CRDs, and returns the admin's configuration and a kubeconfig file for it.
func startAPIServer(t *testing.T, assets, root string) (*rest.Config, string) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		t.Fatalf("locating the Gateway API module for its CRDs: %v", err)
	}
	channel := envOr("SLUICE_CONFORMANCE_CHANNEL", "standard")
	e := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths: []string{
			filepath.Join(strings.TrimSpace(string(out)), "config", "crd", channel),
			filepath.Join(root, "config", "crd"),
		},
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	// No kube-proxy or real node network: the API server must not reconcile its own
	// endpoints on loopback.
	e.ControlPlane.GetAPIServer().Configure().Set("endpoint-reconciler-type", "none")
	// Pod logs come from the pod runner's log server on the Node's InternalIP (the
	// Node's Hostname does not resolve); with no kubelet CA given, the API server does
	// not verify the runner's self-signed certificate.
	e.ControlPlane.GetAPIServer().Configure().Set("kubelet-preferred-address-types", "InternalIP")
	cfg, err := e.Start()
	if err != nil {
		_ = e.Stop()
		t.Fatalf("starting the API server: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Errorf("stopping the API server: %v", err)
		}
	})
	user, err := e.AddUser(envtest.User{Name: "sluice-conformance", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		t.Fatalf("adding a user: %v", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatalf("writing a kubeconfig: %v", err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return user.Config(), path
}

// process is a command that runs until the test ends, its output in a log file.
type process struct {
	cmd  *exec.Cmd
	path string
	done chan struct{}
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) tail(n int) string {
	b, _ := os.ReadFile(p.path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// startProcess runs argv with its output in artifacts/name.log until the test ends
// (SIGTERM, then SIGKILL after 10 s).
func startProcess(t *testing.T, artifacts, name string, argv ...string) *process {
	t.Helper()
	path := filepath.Join(artifacts, name+".log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: exec.Command(argv[0], argv[1:]...), path: path, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		_ = f.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("last output of %s (all of it in %s):\n%s", name, path, p.tail(3000))
		}
	})
	return p
}

// logFile is a goroutine-safe log for the pod runner, which outlives the test's
// logging (t.Logf must not be called after the test ends).
type logFile struct {
	mu sync.Mutex
	f  *os.File
}

func newLogFile(t *testing.T, path string) *logFile {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	l := &logFile{f: f}
	t.Cleanup(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		_ = l.f.Close()
	})
	return l
}

// Logf writes a line to the file, and to stderr when it reports a problem (a pod left
// Pending or not started), which matters to whoever reads the test's output.
func (l *logFile) Logf(format string, args ...any) {
	line := time.Now().Format("15:04:05.000 ") + fmt.Sprintf(format, args...) + "\n"
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.f.WriteString(line)
	if strings.Contains(line, "left Pending") || strings.Contains(line, "not started") || strings.Contains(line, "exited") {
		_, _ = os.Stderr.WriteString(line)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func getStatus(url string) (int, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, nil
}

// waitFor polls cond every 100 ms until it holds, timeout passes or ctx is done.
func waitFor(ctx context.Context, t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, detail := cond()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, detail)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// splitList splits a comma- or space-separated list.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' })
}

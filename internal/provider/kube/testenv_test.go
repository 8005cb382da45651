package kube

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// The tests of this package that need an API server share one real etcd and
// kube-apiserver, started on first use from the binaries hack/testenv/build.sh builds.
// Without them those tests skip, saying so.

const testenvVersion = "v1.37.2"

var (
	envOnce sync.Once
	env     *envtest.Environment
	envCfg  *rest.Config
	envErr  error
	envSkip string
)

func TestMain(m *testing.M) {
	// Quiet the loggers of client-go and controller-runtime; failures are reported by
	// the tests themselves.
	ctrllog.SetLogger(logr.Discard())
	klog.SetLogger(logr.Discard())
	code := m.Run()
	if env != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the test API server:", err)
			code = 1
		}
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// assetsDir is where the control plane binaries are: $KUBEBUILDER_ASSETS, or the cache
// hack/testenv/build.sh fills.
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

// apiServer returns the configuration of the shared test API server, starting it (with
// the Gateway API and Sluice CRDs installed) on first use. It skips the test when the
// binaries have not been built.
func apiServer(t *testing.T) *rest.Config {
	t.Helper()
	envOnce.Do(startEnv)
	if envSkip != "" {
		t.Skip(envSkip)
	}
	if envErr != nil {
		t.Fatalf("starting the test API server: %v", envErr)
	}
	return envCfg
}

func startEnv() {
	dir := assetsDir()
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			envSkip = fmt.Sprintf("no %s in %s: run hack/testenv/build.sh (or set KUBEBUILDER_ASSETS) to run the tests against a real API server", b, dir)
			return
		}
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		envErr = fmt.Errorf("locating the Gateway API module for its CRDs: %w", err)
		return
	}
	gwDir := strings.TrimSpace(string(out))
	e := &envtest.Environment{
		BinaryAssetsDirectory: dir,
		CRDDirectoryPaths: []string{
			filepath.Join(gwDir, "config", "crd", "standard"),
			filepath.Join("..", "..", "..", "config", "crd"),
		},
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	// Nothing runs the endpoints of the default kubernetes Service on loopback.
	e.ControlPlane.GetAPIServer().Configure().Set("endpoint-reconciler-type", "none")
	cfg, err := e.Start()
	if err != nil {
		envErr = err
		_ = e.Stop()
		return
	}
	env, envCfg = e, cfg
}

// newNamespace creates a namespace of its own for one test.
func newNamespace(ctx context.Context, t *testing.T, c client.Client, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatalf("creating a namespace: %v", err)
	}
	return ns.Name
}

// eventually polls cond every 50 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// envClient is what the tests against the API server start with: its configuration,
// a scheme knowing every watched kind, a client, and a context bounded to two minutes.
func envClient(t *testing.T) (*rest.Config, *runtime.Scheme, client.Client, context.Context) {
	t.Helper()
	cfg := apiServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	scheme, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, scheme, c, ctx
}

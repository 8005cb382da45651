package kube

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
	"github.com/sluice-gateway/sluice/internal/translate"
)

// TestCRDInstalledAfterStart starts the provider against an API server that has the
// Gateway API's CRDs but not Sluice's, then installs Sluice's: the provider starts
// watching Backends and TrafficPolicies without a restart. It runs its own API server,
// since the shared one has every CRD installed.
func TestCRDInstalledAfterStart(t *testing.T) {
	apiServer(t) // skips, saying why, when the control plane binaries are not built
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		t.Fatalf("locating the Gateway API module for its CRDs: %v", err)
	}
	e := &envtest.Environment{
		BinaryAssetsDirectory:    assetsDir(),
		CRDDirectoryPaths:        []string{filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")},
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	e.ControlPlane.GetAPIServer().Configure().Set("endpoint-reconciler-type", "none")
	cfg, err := e.Start()
	if err != nil {
		_ = e.Stop()
		t.Fatalf("starting an API server without Sluice's CRDs: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Errorf("stopping the API server: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	scheme, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg, Options{Scheme: scheme, Logger: quietLogger(), CRDRecheck: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	states := startProvider(t, p)
	states.waitState(t, "a first state without Sluice's kinds", func(*translate.Resources) bool { return true })

	crds := filepath.Join("..", "..", "..", "config", "crd")
	if _, err := os.Stat(crds); err != nil {
		t.Fatal(err)
	}
	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: []string{crds}, ErrorIfPathMissing: true}); err != nil {
		t.Fatalf("installing Sluice's CRDs: %v", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	b := &v1alpha1.Backend{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "late"},
		Spec: v1alpha1.BackendSpec{Endpoints: []v1alpha1.BackendEndpoint{{Host: "192.0.2.1", Port: 80}}}}
	if err := c.Create(ctx, b); err != nil {
		t.Fatalf("creating a Backend: %v", err)
	}
	states.waitState(t, "the Backend created after its CRD was installed", func(r *translate.Resources) bool {
		return slices.ContainsFunc(r.Backends, func(b *v1alpha1.Backend) bool { return b.Name == "late" })
	})
}

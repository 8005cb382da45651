package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

func TestKubeFlags(t *testing.T) {
	if code, _, errOut := runCLI("kube", "-h"); code != 0 ||
		!strings.Contains(errOut, "-gateway-class-controller") || !strings.Contains(errOut, "-leader-elect") ||
		!strings.Contains(errOut, "-drain-timeout") {
		t.Errorf("kube -h: exit %d, flags:\n%s", code, errOut)
	}
	missing := filepath.Join(t.TempDir(), "nope.kubeconfig")
	if code, _, errOut := runCLI("kube", "--kubeconfig", missing, "--admin-addr", ""); code != 1 || !strings.Contains(errOut, "nope.kubeconfig") {
		t.Errorf("kube with a missing kubeconfig: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCLI("kube", "extra"); code != 1 || !strings.Contains(errOut, "unexpected arguments") {
		t.Errorf("kube with an argument: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCLI("kube", "--log-level", "loud"); code != 1 || !strings.Contains(errOut, "--log-level") {
		t.Errorf("kube with a bad log level: exit %d, %q", code, errOut)
	}
}

func TestLeaderNamespace(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "from-env")
	for _, tc := range []struct {
		flags kubeFlags
		want  string
	}{
		{kubeFlags{leaderNS: "lease", namespace: "scoped"}, "lease"},
		{kubeFlags{namespace: "scoped"}, "from-env"},
		{kubeFlags{}, "from-env"},
	} {
		if got := leaderNamespace(tc.flags); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.flags, got, tc.want)
		}
	}
	t.Setenv("POD_NAMESPACE", "")
	if _, err := os.Stat(serviceAccountNamespace); err == nil {
		t.Skip("running in a pod: the service account namespace decides")
	}
	if got := leaderNamespace(kubeFlags{namespace: "scoped"}); got != "scoped" {
		t.Errorf("outside a pod with --namespace: %q, want scoped", got)
	}
	if got := leaderNamespace(kubeFlags{}); got != "default" {
		t.Errorf("outside a pod: %q, want default", got)
	}
}

func TestParseGateways(t *testing.T) {
	t.Parallel()
	tests := []struct {
		values    []string
		namespace string
		want      []types.NamespacedName
		err       string
	}{
		{values: []string{"infra/public", "infra/internal"}, want: []types.NamespacedName{{Namespace: "infra", Name: "public"}, {Namespace: "infra", Name: "internal"}}},
		{values: []string{"public"}, namespace: "infra", want: []types.NamespacedName{{Namespace: "infra", Name: "public"}}},
		{values: []string{"public"}, err: "expected namespace/name"},
		{values: []string{"a/b/c"}, err: "expected namespace/name"},
		{values: []string{"/b"}, err: "expected namespace/name"},
		{values: []string{"other/gw"}, namespace: "infra", err: "outside --namespace"},
		{values: nil, want: nil},
	}
	for _, tc := range tests {
		got, err := parseGateways(tc.values, tc.namespace)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.values, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%q: %v, %v; want %v", tc.values, got, err, tc.want)
		}
	}
}

func TestLeaderIDPerSelection(t *testing.T) {
	t.Parallel()
	a := []types.NamespacedName{{Namespace: "infra", Name: "a"}}
	b := []types.NamespacedName{{Namespace: "infra", Name: "b"}}
	ab := []types.NamespacedName{b[0], a[0]}
	ba := []types.NamespacedName{a[0], b[0]}
	if got := leaderID(defaultLeaderID, nil); got != defaultLeaderID {
		t.Errorf("no selection: %q", got)
	}
	if got := leaderID("mine", a); got != "mine" {
		t.Errorf("explicit id: %q", got)
	}
	if leaderID(defaultLeaderID, a) == leaderID(defaultLeaderID, b) {
		t.Error("two selections share a Lease")
	}
	if leaderID(defaultLeaderID, ab) != leaderID(defaultLeaderID, ba) {
		t.Error("the Lease depends on the flags' order")
	}
	if id := leaderID(defaultLeaderID, a); !strings.HasPrefix(id, defaultLeaderID+"-") || len(id) > 63 {
		t.Errorf("Lease name %q", id)
	}
}

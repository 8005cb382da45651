package translate_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/sluice-gateway/sluice/internal/ir"
	"github.com/sluice-gateway/sluice/internal/provider/file"
	"github.com/sluice-gateway/sluice/internal/translate"
)

var update = flag.Bool("update", false, "rewrite testdata/*.out.yaml from the translator's output")

// golden is what a golden file holds: the whole Result in a stable, readable form.
type golden struct {
	Problems   []string       `json:"problems"`
	Config     *ir.Config     `json:"config"`
	Gateways   map[string]any `json:"gateways,omitempty"`
	HTTPRoutes map[string]any `json:"httpRoutes,omitempty"`
	GRPCRoutes map[string]any `json:"grpcRoutes,omitempty"`
	Policies   map[string]any `json:"policies,omitempty"`
	BackendTLS map[string]any `json:"backendTLSPolicies,omitempty"`
	// ListenerSets is left out when there are none, so older goldens need no entry.
	ListenerSets map[string]any `json:"listenerSets,omitempty"`
}

// TestGolden translates every testdata/*.in.yaml and compares the result with the
// matching .out.yaml. Run with -update to rewrite the expectations, then review the diff.
func TestGolden(t *testing.T) {
	ins, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil || len(ins) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			res, err := file.Load(in)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			opts := goldenOptions(name)
			out := render(t, translate.Translate(res, opts))
			// Translate must be deterministic: a second run gives the same bytes.
			if again := render(t, translate.Translate(res, opts)); string(again) != string(out) {
				t.Fatalf("output differs between two runs")
			}
			path := strings.TrimSuffix(in, ".in.yaml") + ".out.yaml"
			if *update {
				if err := os.WriteFile(path, out, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if string(want) != string(out) {
				t.Errorf("%s differs from the translator's output (run with -update and review the diff):\n%s", path, out)
			}
		})
	}
}

// goldenOptions are the translation options of golden input name: file mode, except
// for the class-* inputs, which are Kubernetes mode, and class-select, a per-Gateway
// deployment serving Gateway default/a.
func goldenOptions(name string) translate.Options {
	switch {
	case name == "class-select":
		return translate.Options{Gateways: []types.NamespacedName{{Namespace: "default", Name: "a"}}}
	case strings.HasPrefix(name, "class-"):
		return translate.Options{}
	}
	return translate.Options{AllGatewayClasses: true}
}

func render(t *testing.T, r *translate.Result) []byte {
	t.Helper()
	g := golden{Problems: []string{}, Config: r.Config,
		Gateways: map[string]any{}, HTTPRoutes: map[string]any{}, Policies: map[string]any{}}
	for _, p := range r.Problems {
		g.Problems = append(g.Problems, p.String())
	}
	for k, v := range r.Gateways {
		g.Gateways[k.String()] = v
	}
	for k, v := range r.HTTPRoutes {
		g.HTTPRoutes[k.String()] = v
	}
	for k, v := range r.GRPCRoutes {
		if g.GRPCRoutes == nil {
			g.GRPCRoutes = map[string]any{}
		}
		g.GRPCRoutes[k.String()] = v
	}
	for k, v := range r.BackendTLSPolicies {
		if g.BackendTLS == nil {
			g.BackendTLS = map[string]any{}
		}
		g.BackendTLS[k.String()] = v
	}
	for k, v := range r.ListenerSets {
		if g.ListenerSets == nil {
			g.ListenerSets = map[string]any{}
		}
		g.ListenerSets[k.String()] = v
	}
	for k, v := range r.Policies {
		g.Policies[k.String()] = v
	}
	out, err := yaml.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

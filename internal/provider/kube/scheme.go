package kube

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
)

// NewScheme returns a scheme that knows every kind Sluice reads or writes: the built-in
// kinds (Service, EndpointSlice, Secret, Namespace, Lease), the Gateway API kinds and
// Sluice's own kinds.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for name, add := range map[string]func(*runtime.Scheme) error{
		"built-in kinds":           clientgoscheme.AddToScheme,
		"Gateway API v1":           gwv1.Install,
		"Gateway API v1beta1":      gwv1beta1.Install,
		"gateway.sluice.dev kinds": v1alpha1.AddToScheme,
	} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("registering %s: %w", name, err)
		}
	}
	return s, nil
}

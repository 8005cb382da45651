// Package settings validates and defaults TrafficPolicy extProc fields.
package settings

import (
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
)

// Validate checks every field of spec (backendRef excepted: the translator resolves it)
// and returns one error per invalid field, with its path under fldPath.
// TODO(extproc helper): replace with the real validation.
func Validate(spec *v1alpha1.ExtProc, fldPath *field.Path) field.ErrorList {
	return nil
}

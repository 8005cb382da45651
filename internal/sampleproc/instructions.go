package sampleproc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// instructionsHeader is the request or response header that drives the processor.
const instructionsHeader = "instructions"

// instructions is the JSON document carried in the instructions header. Fields the
// document does not mention stay at their zero value, and unknown fields are ignored so
// that walkthroughs written for newer variants of the sample still work.
type instructions struct {
	AddHeaders    map[string]string `json:"addHeaders"`
	RemoveHeaders []string          `json:"removeHeaders"`
	// SetBody is a pointer so that `"setBody": ""` (replace with an empty body) differs
	// from leaving the body alone.
	SetBody     *string           `json:"setBody"`
	SetTrailers map[string]string `json:"setTrailers"`
}

// findInstructions returns the instructions header's value, or nil when it is absent.
// Gateways differ in which field they fill (Envoy uses raw_value, older processors and
// some gateways use value), so raw_value wins and value is the fallback. Keys are compared
// case-insensitively because not every client lower-cases them.
func findInstructions(headers *corev3.HeaderMap) []byte {
	for _, h := range headers.GetHeaders() {
		if !strings.EqualFold(h.GetKey(), instructionsHeader) {
			continue
		}
		if raw := h.GetRawValue(); len(raw) > 0 {
			return raw
		}
		return []byte(h.GetValue())
	}
	return nil
}

// parseInstructions decodes an instructions header value. An empty (or blank) value and
// the JSON literal null both mean "no instructions", which is reported as a nil result
// without error so callers answer with an empty mutation.
func parseInstructions(raw []byte) (*instructions, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, nil
	}
	var in *instructions
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, fmt.Errorf("parsing %s header as JSON: %w", instructionsHeader, err)
	}
	return in, nil
}

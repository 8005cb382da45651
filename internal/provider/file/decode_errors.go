package file

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

var (
	unknownFieldRE   = regexp.MustCompile(`^unknown field "(.*)"$`)
	duplicateFieldRE = regexp.MustCompile(`^duplicate field "(.*)"$`)
)

// cleanStrictError puts the field path of a strict decoding error first, as in every
// other message, and says what was expected.
func cleanStrictError(s, kindName string) string {
	if m := unknownFieldRE.FindStringSubmatch(s); m != nil {
		return fmt.Sprintf("%s: unknown field: %s has no such field here (check the spelling and the indentation)", m[1], kindName)
	}
	if m := duplicateFieldRE.FindStringSubmatch(s); m != nil {
		return fmt.Sprintf("%s: duplicate field: expected each field once", m[1])
	}
	return s
}

var typeErrorRE = regexp.MustCompile(`^(?:json: )?cannot unmarshal (\w+)(?: \S+)? into Go struct field ([\w.]+) of type ([\w.\[\]*]+)$`)

// cleanJSONError turns encoding/json's type errors, which name Go types and embedded
// structs, into "path: expected TYPE, got KIND" in the terms of the YAML the user wrote.
// The decoder reports no list indexes, so they are found again in the document js: the
// first place along the path holding a value of the reported kind.
func cleanJSONError(s string, js []byte) string {
	m := typeErrorRE.FindStringSubmatch(s)
	if m == nil {
		return strings.TrimPrefix(s, "json: ")
	}
	// m[2] is "GoType.field.field.EmbeddedType.field": the first element and every
	// capitalised element are Go type names, not fields of the document.
	var path []string
	for i, part := range strings.Split(m[2], ".") {
		if i == 0 || part == "" || (part[0] >= 'A' && part[0] <= 'Z') {
			continue
		}
		path = append(path, part)
	}
	want := m[3]
	if i := strings.LastIndexByte(want, '.'); i >= 0 {
		want = want[i+1:]
	}
	if want == "[]uint8" {
		want = "base64 string"
	}
	where := strings.Join(path, ".")
	var doc any
	if json.Unmarshal(js, &doc) == nil {
		if p, ok := locate(doc, path, m[1], ""); ok {
			where = p
		}
	}
	return fmt.Sprintf("%s: expected %s, got %s", where, want, m[1])
}

// locate finds, below node, the path along fields (descending into every list element)
// that ends on a value of JSON kind got ("string", "number", "bool", "object", "array").
// A path that ends on an object also matches one of its values, for map fields.
func locate(node any, fields []string, got, prefix string) (string, bool) {
	if list, ok := node.([]any); ok && (len(fields) > 0 || got != "array") {
		for i, e := range list {
			if p, ok := locate(e, fields, got, fmt.Sprintf("%s[%d]", prefix, i)); ok {
				return p, true
			}
		}
		return "", false
	}
	if len(fields) == 0 {
		if jsonKind(node) == got {
			return prefix, true
		}
		if obj, ok := node.(map[string]any); ok {
			keys := make([]string, 0, len(obj))
			for k := range obj {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if jsonKind(obj[k]) == got {
					return join(prefix, k), true
				}
			}
		}
		return "", false
	}
	obj, ok := node.(map[string]any)
	if !ok {
		return "", false
	}
	child, ok := obj[fields[0]]
	if !ok {
		return "", false
	}
	return locate(child, fields[1:], got, join(prefix, fields[0]))
}

func join(prefix, field string) string {
	if prefix == "" {
		return field
	}
	return prefix + "." + field
}

// jsonKind names the JSON kind of a decoded value as encoding/json's errors do.
func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return "null"
}

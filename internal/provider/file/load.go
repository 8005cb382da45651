// Package file is the file-mode provider: it reads Gateway API and Sluice objects from YAML
// files and directories, strictly, and watches them for changes.
package file

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/sluice-gateway/sluice/internal/translate"
)

// Load reads every object in paths into one Resources. Each path is a file of one or more
// YAML documents separated by "---", or a directory whose *.yaml and *.yml files (not
// those of its subdirectories) are read in name order.
//
// Decoding is strict: an unknown or duplicated field, an unknown apiVersion or kind, or a
// value of the wrong type is an error. Every error names the file, the document number
// (1-based, counting non-empty documents), the object when known and the field path; all
// errors are collected and returned joined. On error the returned Resources still hold the
// objects that decoded cleanly, so a caller such as `sluice validate` can report the
// translation problems of the rest; callers that serve traffic must not use them.
//
// A missing metadata.namespace is "default". A Secret's stringData is merged into data, as
// the API server does. Origins records "path#document" for every object, and
// "path#document.items[i]" for the objects of a v1 List (as `kubectl get -o yaml` writes).
func Load(paths ...string) (*translate.Resources, error) {
	l := &loader{
		res:  &translate.Resources{Origins: map[translate.ObjectKey]string{}},
		seen: map[translate.ObjectKey]string{},
	}
	if len(paths) == 0 {
		l.errs = append(l.errs, errors.New("no configuration path given"))
	}
	read := map[string]bool{}
	for _, p := range paths {
		files, err := expand(p)
		if err != nil {
			l.errs = append(l.errs, err)
			continue
		}
		for _, f := range files {
			// A file named twice (itself and through its directory, say) is read once,
			// rather than reported as defining all its objects twice.
			abs, err := filepath.Abs(f)
			if err != nil {
				abs = f
			}
			if read[abs] {
				continue
			}
			read[abs] = true
			l.loadFile(f)
		}
	}
	return l.res, errors.Join(l.errs...)
}

// expand lists the YAML files of path: itself when a file, its *.yaml and *.yml entries in
// name order when a directory. Hidden entries are skipped: Kubernetes ConfigMap mounts keep
// their real files under "..data" and friends, and the visible names are symlinks to them.
func expand(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("reading configuration directory: %w", err)
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !isYAMLName(name) {
			continue
		}
		full := filepath.Join(path, name)
		// Follow symlinks to decide whether the entry is a file.
		if fst, err := os.Stat(full); err != nil || fst.IsDir() {
			continue
		}
		files = append(files, full)
	}
	sort.Strings(files)
	return files, nil
}

func isYAMLName(name string) bool {
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}

// loader accumulates objects and errors over all files.
type loader struct {
	res  *translate.Resources
	seen map[translate.ObjectKey]string // object -> origin, to report duplicates
	errs []error
}

func (l *loader) loadFile(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		l.errs = append(l.errs, fmt.Errorf("reading configuration: %w", err))
		return
	}
	n := 0
	for _, doc := range splitDocuments(data) {
		if doc.empty() {
			continue
		}
		n++
		origin := fmt.Sprintf("%s#%d", path, n)
		if err := l.loadDocument(origin, doc); err != nil {
			l.errs = append(l.errs, err)
		}
	}
}

// docError is an error in one document, formatted "origin (Kind ns/name): message".
type docError struct {
	origin string
	object string // "Kind ns/name", or "" when not known yet
	msgs   []string
}

func (e *docError) Error() string {
	prefix := e.origin
	if e.object != "" {
		prefix += " (" + e.object + ")"
	}
	if len(e.msgs) == 1 {
		return prefix + ": " + e.msgs[0]
	}
	var b strings.Builder
	b.WriteString(prefix)
	b.WriteString(":")
	for _, m := range e.msgs {
		b.WriteString("\n  ")
		b.WriteString(m)
	}
	return b.String()
}

// header is the part of every object read before its kind is known.
type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

func (l *loader) loadDocument(origin string, doc document) error {
	derr := &docError{origin: origin}
	js, err := yaml.YAMLToJSONStrict(doc.data)
	if err != nil {
		derr.msgs = append(derr.msgs, "invalid YAML: "+shiftLines(err.Error(), doc.line-1))
		return derr
	}
	return l.loadObject(origin, js)
}

// list is a v1 List, as `kubectl get -o yaml` writes several objects.
type list struct {
	Items []json.RawMessage `json:"items"`
}

// loadObject decodes one object (or a v1 List of them) from its JSON form.
func (l *loader) loadObject(origin string, js []byte) error {
	derr := &docError{origin: origin}
	var h header
	if err := json.Unmarshal(js, &h); err != nil {
		var v any
		_ = json.Unmarshal(js, &v)
		if kind := jsonKind(v); kind != "object" {
			derr.msgs = append(derr.msgs, fmt.Sprintf("expected an object with apiVersion, kind and metadata, got %s", kind))
		} else {
			derr.msgs = append(derr.msgs, "apiVersion and kind must be strings, and metadata an object with name and namespace")
		}
		return derr
	}
	if h.APIVersion == "v1" && h.Kind == "List" {
		var items list
		if err := json.Unmarshal(js, &items); err != nil {
			derr.msgs = append(derr.msgs, "items: expected a list of objects: "+err.Error())
			return derr
		}
		var errs []error
		for i, item := range items.Items {
			if err := l.loadObject(fmt.Sprintf("%s.items[%d]", origin, i), item); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	k, ok := lookupKind(h.APIVersion, h.Kind)
	if !ok {
		derr.msgs = append(derr.msgs, unknownKindMessage(h.APIVersion, h.Kind))
		return derr
	}
	ns := h.Metadata.Namespace
	if k.namespaced && ns == "" {
		ns = "default"
	}
	if !k.namespaced && ns != "" {
		derr.msgs = append(derr.msgs, fmt.Sprintf("metadata.namespace: %s is cluster-scoped and takes no namespace", h.Kind))
	}
	key := translate.ObjectKey{Kind: h.Kind, Namespace: ns, Name: h.Metadata.Name}
	if h.Metadata.Name == "" {
		derr.msgs = append(derr.msgs, "metadata.name: required")
	} else {
		derr.object = key.String()
	}
	obj, msgs := k.decode(js, h.Kind)
	derr.msgs = append(derr.msgs, msgs...)
	if len(derr.msgs) > 0 {
		return derr
	}
	if prev, dup := l.seen[key]; dup {
		derr.msgs = append(derr.msgs, fmt.Sprintf("duplicate object: %s is also defined at %s", key, prev))
		return derr
	}
	l.seen[key] = origin
	l.res.Origins[key] = origin
	k.add(l.res, obj, ns)
	return nil
}

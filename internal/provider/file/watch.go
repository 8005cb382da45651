package file

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/sluice-gateway/sluice/internal/translate"
)

// debounce is how long Watch waits after the last change before reloading: editors and
// ConfigMap updates touch several files in a burst, and one reload should see them all.
const debounce = 100 * time.Millisecond

// Watch reloads paths (as Load does) whenever they change and calls onChange with the
// result of each reload, from the calling goroutine: Watch blocks until ctx is done, then
// returns nil, leaving no goroutine behind. Its first call reports the files as they are
// once the watches are in place, so that an edit made between an earlier Load and Watch is
// never lost.
//
// Watch watches directories, not files: the directories given, and the parent directory
// of each file given. That way a file replaced by rename (as editors save) or a symlink
// swapped (as Kubernetes updates ConfigMap mounts, through "..data") is still seen. Changes
// to other files of a parent directory are ignored.
//
// A watcher error (an event queue overflow, say) is passed to onChange as a nil Resources
// and the error; watching goes on. Paths that do not exist when Watch starts are an error.
func Watch(ctx context.Context, paths []string, onChange func(*translate.Resources, error)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching configuration: %w", err)
	}
	defer w.Close()

	f := &filter{dirs: map[string]bool{}, files: map[string]bool{}}
	watched := map[string]bool{}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("watching configuration: %w", err)
		}
		st, err := os.Stat(abs)
		if err != nil {
			return fmt.Errorf("watching configuration: %w", err)
		}
		dir := abs
		if st.IsDir() {
			f.dirs[abs] = true
		} else {
			f.files[abs] = true
			dir = filepath.Dir(abs)
		}
		if watched[dir] {
			continue
		}
		if err := w.Add(dir); err != nil {
			return fmt.Errorf("watching configuration %s: %w", dir, err)
		}
		watched[dir] = true
	}

	res, err := Load(paths...)
	onChange(res, err)

	// The timer is created stopped; each relevant event (re)arms it.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			// Chmod alone changes no content (and fires often, on indexers' touch).
			if ev.Op != fsnotify.Chmod && f.relevant(ev.Name) {
				timer.Reset(debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			onChange(nil, fmt.Errorf("watching configuration: %w", err))
		case <-timer.C:
			res, err := Load(paths...)
			onChange(res, err)
		}
	}
}

// filter decides which events concern the configuration.
type filter struct {
	dirs  map[string]bool // directories given: any YAML file in them counts
	files map[string]bool // files given
}

func (f *filter) relevant(name string) bool {
	name = filepath.Clean(name)
	base := filepath.Base(name)
	dir := filepath.Dir(name)
	if f.files[name] {
		return true
	}
	// Kubernetes' atomic writer swaps "..data" (and writes "..2024_..." directories) in
	// the mounted directory; files given from such a directory are symlinks through it.
	if strings.HasPrefix(base, "..") {
		if f.dirs[dir] {
			return true
		}
		for file := range f.files {
			if filepath.Dir(file) == dir {
				return true
			}
		}
		return false
	}
	return f.dirs[dir] && isYAMLName(base) && !strings.HasPrefix(base, ".")
}

package filter

import (
	"sync"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"
)

func TestMetadataMergeAndSnapshot(t *testing.T) {
	t.Parallel()
	var ex Exchange
	if ex.Metadata() != nil {
		t.Fatal("new exchange has metadata")
	}
	a, _ := structpb.NewStruct(map[string]any{"a": "1", "b": "1"})
	ex.SetMetadata("ns", a)
	before := ex.Metadata()
	b, _ := structpb.NewStruct(map[string]any{"b": "2"})
	ex.SetMetadata("ns", b)
	ex.SetMetadata("other", nil)
	got := ex.Metadata()["ns"].AsMap()
	if got["a"] != "1" || got["b"] != "2" || len(ex.Metadata()) != 1 {
		t.Errorf("merged metadata %v", ex.Metadata())
	}
	if before["ns"].AsMap()["b"] != "1" {
		t.Error("a snapshot changed after a later SetMetadata")
	}
}

// TestMetadataConcurrent: writers on body-reader goroutines and a reader (the access log)
// at the same time; -race proves the lock.
func TestMetadataConcurrent(t *testing.T) {
	t.Parallel()
	var ex Exchange
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 100 {
				s, _ := structpb.NewStruct(map[string]any{"k": float64(i*1000 + j)})
				ex.SetMetadata("ns", s)
			}
		}()
	}
	for range 100 {
		for _, s := range ex.Metadata() {
			_ = s.AsMap()
		}
	}
	wg.Wait()
}

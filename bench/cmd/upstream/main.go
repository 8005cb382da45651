// Command upstream is bench/run's upstream for the scenarios with large or uploaded bodies
// (the small fixed response comes from nginx). It serves:
//
//	GET  /large?size=N  N bytes (default 1 GiB) with a Content-Length
//	*    /sink          reads the whole request body, then answers a small JSON document
//	*    anything else  the same small JSON document
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

var small = []byte(`{"service":"bench-upstream","items":[` + strings.Repeat(`{"id":12345,"ok":true},`, 11) + `{"id":0,"ok":true}]}` + "\n")

var bufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

func writeSmall(w http.ResponseWriter, extra string) {
	w.Header().Set("Content-Type", "application/json")
	if extra != "" {
		w.Header().Set("X-Received", extra)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(small)))
	_, _ = w.Write(small)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:18096", "loopback host:port to listen on")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("/large", func(w http.ResponseWriter, r *http.Request) {
		size := int64(1 << 30)
		if s := r.URL.Query().Get("size"); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				http.Error(w, "bad size", http.StatusBadRequest)
				return
			}
			size = n
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		bp := bufPool.Get().(*[]byte)
		defer bufPool.Put(bp)
		buf := *bp
		for size > 0 {
			chunk := buf
			if int64(len(chunk)) > size {
				chunk = chunk[:size]
			}
			n, err := w.Write(chunk)
			if err != nil {
				return
			}
			size -= int64(n)
		}
	})
	mux.HandleFunc("/sink", func(w http.ResponseWriter, r *http.Request) {
		bp := bufPool.Get().(*[]byte)
		n, err := io.CopyBuffer(io.Discard, r.Body, *bp)
		bufPool.Put(bp)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeSmall(w, strconv.FormatInt(n, 10))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { writeSmall(w, "") })
	fmt.Fprintf(log.Writer(), "upstream: %d-byte small body, listening on %s\n", len(small), *addr)
	log.Fatal(http.ListenAndServe(*addr, mux))
}

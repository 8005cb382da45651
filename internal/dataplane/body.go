package dataplane

import (
	"errors"
	"io"
	"net/http"
	"sync"
)

// errClientWrite marks a failure to write to the client, as opposed to reading upstream.
var errClientWrite = errors.New("writing to the client")

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyBody streams src to the client. With flush set, every chunk is flushed as it comes,
// for event streams and bodies of unknown length whose reader waits on the next chunk.
func copyBody(rw http.ResponseWriter, src io.Reader, flush bool) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var fl http.Flusher
	if flush {
		fl, _ = rw.(http.Flusher)
	}
	var written int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			m, werr := rw.Write(buf[:n])
			written += int64(m)
			if werr != nil {
				return written, errors.Join(errClientWrite, werr)
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
	}
}
